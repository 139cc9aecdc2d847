"""TVM's classic tutorials, ported by renaming only: ``tvm.te.``, ``tvm.tir.``, ``te.`` and
``tvm.`` become ``td.``. Each program is the tutorial's, compared with numpy on outputs
that start as NaN; where the runtime differs (numpy arrays instead of ``tvm.nd.array`` on
a device, ``f.emulate`` instead of a GPU) the line says so. What still differs from TVM
is listed in the README's section on TVM compatibility."""
