"""Parts of file and folder names made from what a study holds or a user typed (a study id, a
patient name, a DICOM patient ID): the report's default file name, a retrieved study's folder,
an imported exam's folder.

Why one rule: a name from a manifest or a PACS may hold a path separator, "..", a NUL, a
leading dot or only punctuation; each of those would make a name that points elsewhere, is
hidden or is empty. Letters and digits of any script are kept (a patient's name stays readable).
"""

from __future__ import annotations


def file_name_part(text: str, fallback: str, keep: str = "-_.") -> str:
    """``text`` as part of a file or folder name: every character other than a letter, a digit
    or one of ``keep`` replaced by "_", then dots and underscores (and whitespace) trimmed from
    both ends, so the part is never hidden, "." or ".."; ``fallback`` when nothing is left."""
    cleaned = "".join(c if c.isalnum() or c in keep else "_" for c in text.strip())
    return cleaned.strip("._") or fallback
