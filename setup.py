"""Only what pyproject.toml cannot say: ship the repository's top-level ``resources/`` folder
inside the package as ``viewer/resources`` (wheel and sdist), where
``viewer/core/resources.py`` looks for it in an installed copy. Everything else is in
pyproject.toml. An editable install maps ``viewer.resources`` to ``resources/`` as well.
"""

from setuptools import find_namespace_packages, find_packages, setup

# resources/ and each of its folders (anatomy, models, icons, desktop, …) as data packages
RESOURCE_PACKAGES = ["viewer.resources"] + [
    f"viewer.resources.{name}" for name in find_namespace_packages(where="resources", exclude=["*__pycache__*"])
]

setup(
    packages=find_packages(include=["viewer", "viewer.*"]) + RESOURCE_PACKAGES,
    package_dir={"viewer.resources": "resources"},
    package_data={name: ["*"] for name in RESOURCE_PACKAGES},
)
