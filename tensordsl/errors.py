"""The errors tensordsl raises on purpose."""


class TensorDSLError(Exception):
    """Base of tensordsl's own errors."""


class ScheduleError(TensorDSLError, ValueError, RuntimeError):
    """An illegal schedule request; the message names the stage and the axis. Also a
    ``RuntimeError``, as TVM's ``TVMError`` is, so a ported ``except`` still catches it."""


class BuildError(TensorDSLError, RuntimeError):
    """A program that cannot be compiled for the requested target."""


class DeviceNotAvailable(TensorDSLError, RuntimeError):
    """The requested device (for example a CUDA GPU) is not present."""
