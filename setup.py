"""Builds the one compiled piece: the MuJoCo substep kernel (sim/_impedance_kernel.c).

It is a plain C loop over physics substeps that calls MuJoCo through function
pointers handed over at run time, so it links against nothing and needs only a
C compiler. Without one the install still succeeds and the simulator falls back
to the numpy controller (slower, same law).
"""
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler: keep the pure-Python fallback
            print(f"warning: C kernel not built ({exc}); using the numpy controller")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"warning: C kernel not built ({exc}); using the numpy controller")


setup(
    ext_modules=[Extension("robot_rl.sim._impedance_kernel", ["sim/_impedance_kernel.c"],
                           extra_compile_args=["-O3"])],
    cmdclass={"build_ext": OptionalBuildExt},
)
