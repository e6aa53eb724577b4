"""Builds rnnkit's compiled time loops (rnnkit/csrc) as the extension module ``rnnkit._fused``.

Everything else is in pyproject.toml. The build needs torch's headers: pyproject.toml pins the torch
of the build environment to the one the README installs, because a C++ extension must be built
against the torch it runs with. If the compiler is missing or the build fails, the install still
succeeds without the extension and rnnkit runs its Python hand BPTT instead, with a warning
(``rnnkit.engine.fused``).
"""
import sys

from setuptools import setup

try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError:                                   # no torch in the build environment
    BuildExtension = CppExtension = None


def extensions():
    if CppExtension is None:
        print("rnnkit: torch is not importable at build time; building without the compiled loops",
              file=sys.stderr)
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:                # a missing compiler must not fail the install
                print(f"rnnkit: could not build {ext.name} ({error}); rnnkit will run its Python "
                      f"loops instead", file=sys.stderr)

    flags = ["-O3", "-ffast-math", "-fopenmp-simd", "-march=native"]
    module = CppExtension("rnnkit._fused", [f"rnnkit/csrc/{name}.cpp" for name in ("module", "lstm_family", "gru", "minimal")],
                          extra_compile_args=flags)
    return [module], {"build_ext": OptionalBuildExtension.with_options(use_ninja=False)}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
