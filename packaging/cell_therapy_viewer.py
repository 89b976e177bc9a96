"""Entry point of the frozen application (PyInstaller, packaging/viewer.spec).

The executable ``cell-therapy-viewer`` takes exactly the arguments of the ``viewer`` command:
no argument opens the window, ``open STUDY``, ``demo --out DIR``, ``stats``, ``render``,
``report``, ``--version``.

``CELL_THERAPY_VIEWER_SELFTEST=1 cell-therapy-viewer`` instead checks, inside the frozen app,
what the command-line smoke test does not reach (packaging/smoke_test.sh runs it): every
``viewer`` module imports, VTK renders off screen (the 3-D view is never built at start-up),
the Qt platform plugins, reportlab's C accelerator, onnxruntime, matplotlib's fonts, the
bundled resources and the numba cache folder. It prints one line per check and exits 1 if
any failed.
"""

import os
import sys


def _self_test() -> int:
    import importlib
    import pkgutil
    from pathlib import Path

    bundle = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent))

    def modules() -> str:
        import viewer

        names = [info.name for info in pkgutil.walk_packages(viewer.__path__, "viewer.")
                 if info.name != "viewer.__main__"]  # that one would run the application
        for name in names:
            importlib.import_module(name)
        assert len(names) > 30, names
        return f"{len(names)} viewer modules import"

    def vtk() -> str:
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL back end)
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkFiltersSources import vtkSphereSource
        from vtkmodules.vtkRenderingCore import (
            vtkActor,
            vtkPolyDataMapper,
            vtkRenderer,
            vtkRenderWindow,
            vtkWindowToImageFilter,
        )

        source = vtkSphereSource()
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(source.GetOutputPort())
        actor = vtkActor()
        actor.SetMapper(mapper)
        renderer = vtkRenderer()
        renderer.AddActor(actor)
        window = vtkRenderWindow()
        window.SetOffScreenRendering(1)
        window.AddRenderer(renderer)
        window.SetSize(64, 64)
        window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.Update()
        pixels = vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars())
        window.Finalize()
        assert pixels.std() > 10, "blank VTK render"
        return f"{type(window).__name__} drew a sphere (pixel std {pixels.std():.0f})"

    def qt_plugins() -> str:
        import PySide6

        folder = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms"
        found = sorted(path.name for path in folder.iterdir())
        for wanted in ("xcb", "offscreen"):
            assert any(wanted in name for name in found), f"no {wanted} platform plugin in {found}"
        return ", ".join(found)

    def rl_accel() -> str:
        import _rl_accel  # noqa: F401
        from reportlab.lib.rl_accel import _c_funcs

        assert _c_funcs, "reportlab does not use _rl_accel"
        return f"{len(_c_funcs)} C functions"

    def onnx() -> str:
        import numpy as np
        import onnxruntime

        from viewer.core.resources import resource_path

        session = onnxruntime.InferenceSession(str(resource_path("models", "penumbra_recovery_demo.onnx")),
                                               providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        width = spec.shape[-1] if isinstance(spec.shape[-1], int) else 1
        session.run(None, {spec.name: np.zeros((1, width), dtype=np.float32)})
        return f"onnxruntime {onnxruntime.__version__}: demo model runs"

    def fonts() -> str:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"):
            assert (ttf / name).is_file(), f"{ttf / name} missing"
        return str(ttf)

    def resources() -> str:
        from viewer.core.resources import resource_path, resources_dir

        folder = resources_dir()
        assert folder == bundle / "viewer" / "resources", folder
        resource_path("anatomy", "NOTICE.txt")
        return str(folder)

    def numba_cache() -> str:
        """The window's slice kernels compile (or load) inside the app, into the per-user cache."""
        import time

        folder = os.environ.get("NUMBA_CACHE_DIR", "")
        assert folder and not Path(folder).resolve().is_relative_to(bundle.resolve()), folder
        import numba

        from viewer.core.plane_kernels import warm_up

        start = time.perf_counter()
        warm_up()
        seconds = time.perf_counter() - start
        indexes = list(Path(folder).rglob("*.nbi"))
        assert indexes, f"numba wrote no cache index under {folder}"
        return f"numba {numba.__version__}, kernels ready in {seconds:.1f} s, {len(indexes)} index files in {folder}"

    failures = 0
    for check in (modules, vtk, qt_plugins, rl_accel, onnx, fonts, resources, numba_cache):
        try:
            print(f"ok   {check.__name__}: {check()}", flush=True)
        except Exception as exc:  # noqa: BLE001  (report every check, then fail)
            failures += 1
            print(f"FAIL {check.__name__}: {type(exc).__name__}: {exc}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    if os.environ.get("CELL_THERAPY_VIEWER_SELFTEST") == "1":
        sys.exit(_self_test())
    from viewer.cli import main

    sys.exit(main())
