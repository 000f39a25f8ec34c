#!/usr/bin/env python3
"""Lay out a libtensorflow 'deps' folder (lib/ + include/) from a tensorflow-cpu wheel.

tfjs-node 4.22 wants libtensorflow 2.9.1 from Google storage, which is unreachable here
(and answers 403 online). The tensorflow-cpu wheel on PyPI carries the same C API in
libtensorflow_cc.so.2, so we repackage it under the file names the binding links against.

usage: libtensorflow_from_wheel.py WHEEL DEST_DIR
"""
import os
import shutil
import sys
import zipfile

HEADER_PREFIXES = (
    "tensorflow/include/tensorflow/c/",
    "tensorflow/include/xla/tsl/c/",
)
CTSTRING_HEADERS = (
    "tensorflow/include/tensorflow/core/platform/ctstring.h",
    "tensorflow/include/tensorflow/core/platform/ctstring_internal.h",
    "tensorflow/include/tsl/platform/ctstring.h",
    "tensorflow/include/tsl/platform/ctstring_internal.h",
)
LIBS = {
    "tensorflow/libtensorflow_cc.so.2": "libtensorflow_cc.so.2",
    "tensorflow/libtensorflow_framework.so.2": "libtensorflow_framework.so.2",
}
LINKS = {
    "libtensorflow.so": "libtensorflow_cc.so.2",
    "libtensorflow.so.2": "libtensorflow_cc.so.2",
    "libtensorflow.so.2.9.1": "libtensorflow_cc.so.2",
    "libtensorflow_framework.so": "libtensorflow_framework.so.2",
    "libtensorflow_framework.so.2.9.1": "libtensorflow_framework.so.2",
}


def main(wheel: str, dest: str) -> None:
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "lib"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        missing = [n for n in LIBS if n not in names]
        if missing:
            sys.exit(f"{wheel}: not a tensorflow-cpu wheel with the C API (missing {missing})")
        for member, target in LIBS.items():
            with z.open(member) as src, open(os.path.join(tmp, "lib", target), "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        for member in names:
            if member.endswith("/"):
                continue
            if member.startswith(HEADER_PREFIXES) or member in CTSTRING_HEADERS:
                rel = member[len("tensorflow/include/"):]
                path = os.path.join(tmp, "include", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with z.open(member) as src, open(path, "wb") as out:
                    shutil.copyfileobj(src, out)
    for link, target in LINKS.items():
        os.symlink(target, os.path.join(tmp, "lib", link))
    # Only a complete folder gets the final name, so an interrupted run is redone, never used.
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
