"""Build the skbnn extension: Cython wrapper plus hand-written C kernels.

No ``-march``/``-mavx*`` flags: wide instructions live only in functions with
per-function ``target`` attributes and are selected at import time.
OpenMP is used when a test program compiles with ``-fopenmp`` and
``SKBNN_NO_OPENMP`` is not set.  ``SKBNN_SANITIZE=address,undefined`` builds
with AddressSanitizer and UndefinedBehaviorSanitizer (see
docs/user_guide/robustness.rst for running the tests under them).
"""
import os
import shutil
import subprocess
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def openmp_flags(compiler_cmd):
    """Return the OpenMP flag if the compiler accepts it, else None."""
    if os.environ.get("SKBNN_NO_OPENMP", "0") not in ("", "0"):
        return None
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        cmd = [compiler_cmd, "-fopenmp", src, "-o", os.path.join(tmp, "omp_test")]
        ok = subprocess.run(cmd, capture_output=True).returncode == 0
        return "-fopenmp" if ok else None
    except OSError:
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        cc = self.compiler.compiler_so[0] if hasattr(self.compiler, "compiler_so") else "cc"
        flag = openmp_flags(cc)
        if flag is None:
            print("skbnn: building WITHOUT OpenMP (sequential kernels)", file=sys.stderr)
        for ext in self.extensions:
            if flag is not None:
                ext.extra_compile_args.append(flag)
                ext.extra_link_args.append(flag)
        super().build_extensions()


def sanitizer_flags(value):
    """Compile and link flags of ``SKBNN_SANITIZE`` (e.g. ``address,undefined``).

    Every report aborts the process (``-fno-sanitize-recover=all``), so a test
    run under the sanitizers fails on the first one.  GCC leaves
    ``float-cast-overflow`` (a NaN or out-of-range float converted to an
    integer) out of ``undefined``; it is added with it, as clang does.
    """
    checks = [c.strip() for c in value.split(",") if c.strip()]
    if not checks:
        return [], []
    if "undefined" in checks and "float-cast-overflow" not in checks:
        checks.append("float-cast-overflow")
    flag = "-fsanitize=" + ",".join(checks)
    return [flag, "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"], [flag]


# -ffp-contract=off: no FMA contraction, so float kernels give the same bits
# on every SIMD path and in the portable code
compile_args = ["-O3", "-std=c11", "-fno-strict-aliasing", "-ffp-contract=off"]
link_args = []
san_compile, san_link = sanitizer_flags(os.environ.get("SKBNN_SANITIZE", ""))
compile_args += san_compile
link_args += san_link

extensions = [
    Extension(
        "skbnn._kernels",
        sources=["skbnn/_kernels.pyx", "skbnn/_csrc/bnn_kernels.c", "skbnn/_csrc/real_kernels.c",
                 "skbnn/_csrc/bn_kernels.c", "skbnn/_csrc/field_kernels.c",
                 "skbnn/_csrc/conv_kernels.c"],
        include_dirs=["skbnn/_csrc"],
        libraries=[] if sys.platform == "win32" else ["m"],  # fmaf
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]

directives = {
    "language_level": 3,
    "boundscheck": os.environ.get("SKBNN_BOUNDSCHECK", "0") == "1",
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
    "freethreading_compatible": True,
}

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives),
    cmdclass={"build_ext": BuildExt},
)
