"""Dense operators as tensor expressions (compute definitions only; no schedules).

Each function takes placeholders (or any tensors) and returns the output tensor.
Shape mismatches raise ``ValueError`` naming both shapes when the operator is defined.
Layouts follow the usual conventions: NCHW data with OIHW weights, NHWC data with HWIO
weights; ``dense`` weights are (out_features, in_features) as in PyTorch.

Parameter names follow PyTorch and numpy: ``x`` the input (``a, b`` for two operands),
``weight``, ``kernel_size``, ``stride``, ``padding``, ``axis``, ``keepdims``; ``gamma``
and ``beta`` (``layer_norm``'s scale and shift, PyTorch's ``weight`` and ``bias``) are
TVM's names. A wrongly typed option raises ``TypeError`` naming it.
"""
from __future__ import annotations

import math

import tensordsl as td
from tensordsl.ir import nodes as n
from tensordsl.te.tensor import STOP_GRADIENT_TAG


# ---------------------------------------------------------------- helpers


def _dim(e):
    return e.value if isinstance(e, n.IntImm) else e


def _shape(t) -> tuple:
    return tuple(_dim(d) for d in t.shape)


def _same_extent(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a is b or not (isinstance(a, int) and isinstance(b, int))


def _check(cond: bool, msg: str):
    if not cond:
        raise ValueError(msg)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pair(v, what: str) -> tuple[int, int]:
    """``2`` or ``(2, 2)``; a value of another type is a ``TypeError`` naming ``what``."""
    if _is_int(v):
        return v, v
    if isinstance(v, (tuple, list)) and all(_is_int(x) for x in v):
        if len(v) == 2:
            return int(v[0]), int(v[1])
        raise ValueError(f"{what}: expected an int or a pair of ints, got {v!r}")
    raise TypeError(f"{what}: expected an int or a pair of ints, got {v!r}")


def _axes(axis, ndim: int, what: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if not _is_int(axis) and not isinstance(axis, (tuple, list)):
        raise TypeError(f"{what}: axis must be an int or a tuple of ints, got {axis!r}")
    axes = (axis,) if _is_int(axis) else tuple(axis)
    out = []
    for a in axes:
        if not _is_int(a):
            raise TypeError(f"{what}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{what}: axis {a!r} is out of range for {ndim} dimensions")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: repeated axis in {axis!r}")
    return tuple(sorted(out))


# ---------------------------------------------------------------- matmul family


def matmul(a, b, transpose_a: bool = False, transpose_b: bool = False, name: str = "matmul",
           out_dtype: str | None = None):
    """Matrix product ``c[i, j] = sum_k a[i, k] * b[k, j]`` (``a``/``b`` read transposed
    on request); ``out_dtype`` (e.g. ``"float32"`` for float16 inputs) casts the operands
    and accumulates in it, as tensor cores do.

    >>> c = td.ops.matmul(a, b)    # a: (M, K), b: (K, N) -> (M, N)
    """
    A, B = a, b
    _check(A.ndim == 2 and B.ndim == 2,
           f"matmul: expected 2-d operands, got shapes {_shape(A)} and {_shape(B)}")
    M, Ka = (A.shape[1], A.shape[0]) if transpose_a else (A.shape[0], A.shape[1])
    Kb, N = (B.shape[1], B.shape[0]) if transpose_b else (B.shape[0], B.shape[1])
    _check(_same_extent(_dim(Ka), _dim(Kb)),
           f"matmul: inner dimensions differ: A has shape {_shape(A)}"
           f"{' (transposed)' if transpose_a else ''}, B has shape {_shape(B)}"
           f"{' (transposed)' if transpose_b else ''}")
    k = td.reduce_axis((0, Ka), "k")
    a = (lambda i: A[k, i]) if transpose_a else (lambda i: A[i, k])
    b = (lambda j: B[j, k]) if transpose_b else (lambda j: B[k, j])
    if out_dtype is not None:
        a0, b0 = a, b
        a = (lambda i: a0(i).astype(out_dtype))
        b = (lambda j: b0(j).astype(out_dtype))
    return td.compute((M, N), lambda i, j: td.sum(a(i) * b(j), axis=k), name=name)


def batch_matmul(a, b, transpose_a: bool = False, transpose_b: bool = False,
                 name: str = "batch_matmul"):
    """Batched matrix product ``c[n, i, j] = sum_k a[n, i, k] * b[n, k, j]``.

    >>> c = td.ops.batch_matmul(a, b)    # a: (N, M, K), b: (N, K, L) -> (N, M, L)
    """
    A, B = a, b
    _check(A.ndim == 3 and B.ndim == 3,
           f"batch_matmul: expected 3-d operands, got shapes {_shape(A)} and {_shape(B)}")
    _check(_same_extent(_dim(A.shape[0]), _dim(B.shape[0])),
           f"batch_matmul: batch sizes differ: {_shape(A)} and {_shape(B)}")
    M, Ka = (A.shape[2], A.shape[1]) if transpose_a else (A.shape[1], A.shape[2])
    Kb, N = (B.shape[2], B.shape[1]) if transpose_b else (B.shape[1], B.shape[2])
    _check(_same_extent(_dim(Ka), _dim(Kb)),
           f"batch_matmul: inner dimensions differ: A has shape {_shape(A)}, "
           f"B has shape {_shape(B)}")
    k = td.reduce_axis((0, Ka), "k")
    a = (lambda b, i: A[b, k, i]) if transpose_a else (lambda b, i: A[b, i, k])
    bb = (lambda b, j: B[b, j, k]) if transpose_b else (lambda b, j: B[b, k, j])
    return td.compute((A.shape[0], M, N), lambda b, i, j: td.sum(a(b, i) * bb(b, j), axis=k),
                      name=name)


def dense(x, weight, bias=None, name: str = "dense"):
    """``y = x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features),
    as PyTorch's ``linear``.

    >>> y = td.ops.dense(x, weight, bias)    # (N, in), (out, in), (out,) -> (N, out)
    """
    W = weight
    _check(x.ndim == 2 and W.ndim == 2,
           f"dense: expected 2-d x and W, got shapes {_shape(x)} and {_shape(W)}")
    _check(_same_extent(_dim(x.shape[1]), _dim(W.shape[1])),
           f"dense: in_features differ: x has shape {_shape(x)}, W has shape {_shape(W)}")
    y = matmul(x, W, transpose_b=True, name=name if bias is None else f"{name}.matmul")
    if bias is None:
        return y
    _check(bias.ndim == 1 and _same_extent(_dim(bias.shape[0]), _dim(W.shape[0])),
           f"dense: bias must have shape ({_dim(W.shape[0])},), got {_shape(bias)}")
    return td.compute(y.shape, lambda i, j: y[i, j] + bias[j], name=name)


# ---------------------------------------------------------------- convolution


def pad(x, before, after, value=0.0, name: str = "pad"):
    """Constant padding: ``before``/``after`` give the padding of each dimension."""
    if all(b == 0 and a == 0 for b, a in zip(before, after)):
        return x
    shape = tuple(_dim(d) + b + a for d, b, a in zip(x.shape, before, after))

    def f(*idx):
        conds, src = [], []
        for i, b, a, d in zip(idx, before, after, x.shape):
            if b:
                conds.append(i >= b)
            if a:
                conds.append(i < d + b)
            src.append(i - b if b else i)
        return td.if_then_else(td.all(*conds), x[tuple(src)], td.const(value, x.dtype))

    return td.compute(shape, f, name=name)


def _conv_out(size, k, stride, pad_lo, pad_hi, dilation, what):
    out = (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1
    _check(out > 0, f"{what}: the window ({k}, dilation {dilation}) is larger than the padded "
                    f"input ({size} + {pad_lo} + {pad_hi})")
    return out


def _padding4(padding, what):
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        return tuple(padding)
    raise ValueError(f"{what}: padding must be an int, (ph, pw) or (top, left, bottom, right), "
                     f"got {padding!r}")


class _ConvGeometry:
    """Validated sizes of a 2-d convolution (shared by the NCHW and NHWC layouts)."""

    def __init__(self, what, data, kernel, dims, kdims, stride, padding, dilation, groups):
        _check(data.ndim == 4 and kernel.ndim == 4,
               f"{what}: expected 4-d data and kernel, got {_shape(data)} and {_shape(kernel)}")
        C, H, W = dims
        F, Cg, KH, KW = kdims
        _check(all(isinstance(v, int) for v in (C, H, W, F, Cg, KH, KW)),
               f"{what}: channel and spatial sizes must be constants")
        _check(isinstance(groups, int) and groups >= 1 and C % groups == 0 and F % groups == 0,
               f"{what}: groups={groups!r} must divide the {C} input and {F} output channels")
        _check(Cg == C // groups, f"{what}: kernel {_shape(kernel)} needs {C // groups} input "
                                  f"channels per group for data {_shape(data)} and groups={groups}")
        self.F, self.Cg, self.KH, self.KW, self.groups = F, Cg, KH, KW, groups
        self.sh, self.sw = _pair(stride, f"{what} stride")
        self.dh, self.dw = _pair(dilation, f"{what} dilation")
        self.pt, self.pl, self.pb, self.pr = _padding4(padding, what)
        self.OH = _conv_out(H, KH, self.sh, self.pt, self.pb, self.dh, what)
        self.OW = _conv_out(W, KW, self.sw, self.pl, self.pr, self.dw, what)
        self.rc = td.reduce_axis((0, Cg), "rc")
        self.ry = td.reduce_axis((0, KH), "ry")
        self.rx = td.reduce_axis((0, KW), "rx")

    def channel(self, f):
        """The input channel that reduction index ``rc`` reads for output channel ``f``."""
        if self.groups == 1:
            return self.rc
        return (f // (self.F // self.groups)) * self.Cg + self.rc

    def rows(self, y):
        return y * self.sh + self.ry * self.dh

    def cols(self, x):
        return x * self.sw + self.rx * self.dw


CONV_FORMS = (None, "portable", "channels", "winograd", "auto")
# "auto" takes the channels form for a dense window convolution whose every weight
# serves at least this many output positions (batch x image): it packs the weights on
# every call, which a small image does not repay (b1 512->512 @7, 49 positions: 2.4x
# slower than the padded-width form here; b8 256->256 @14, 1568: 1.25x faster)
CHANNELS_MIN_POSITIONS = 192
# ... and for a 1x1 of a batch over at least this many input channels: the padded-width
# form's tiles of whole vectors of positions compute 14-31% more than a 14 x 14 or 7 x 7
# image has, which a reduction this long repays in the channels form despite its
# transposed write-back (b8 1024->256 @14 1.2x, 1024->512 @14 1.15x, 1x1/2
# 1024->2048 @14 1.08x; over 512 channels, or at batch 1, no faster)
CHANNELS_MIN_POINTWISE_REDUCTION = 1024


def conv2d_nchw(x, weight, stride=1, padding=0, dilation=1, groups: int = 1,
                name: str = "conv2d_nchw", form: str | None = None):
    """2-d convolution (PyTorch's ``conv2d``): ``x`` (N, C, H, W), ``weight`` (F, C/groups,
    KH, KW) → (N, F, OH, OW). ``stride``, ``dilation``: an int or (h, w); ``padding``: an
    int, (h, w) or (top, left, bottom, right).

    ``form`` picks the compute definition. None or ``"portable"``: a dense stride-1
    convolution is computed over the padded width (see ``_conv2d_nchw_flat``: a 1x1 one is a matrix
    product over the flattened image); a strided one reads its input split by column
    phases (``_column_phases``); the others directly. ``"channels"``: a dense (ungrouped)
    one over its flattened output positions, for output channels in vector lanes
    (``_conv2d_nchw_channels``). ``"winograd"``: a dense 3x3 stride-1 one by
    Winograd's F(2x2, 3x3) (``_conv2d_nchw_winograd``: 2.25x fewer multiply-adds, in
    16 matrix products). ``"auto"``: Winograd's form for a 3x3 stride-1 window over
    enough tiles (``_winograd_pays``); the channels form for another dense window,
    strided or not, of at least 16 output channels and ``CHANNELS_MIN_POSITIONS``
    output positions (a 1x1 is a plain matrix product, 3-20% faster in the portable
    forms, unless a batch's reduction is ``CHANNELS_MIN_POINTWISE_REDUCTION`` long),
    else the portable forms, a 1x1 computed in the output's place (``in_place``).
    The CPU operator path (``td.ops``) turns None into ``"auto"``; the GPU templates and
    the gradients take the portable forms.

    >>> y = td.ops.conv2d_nchw(x, weight, stride=1, padding=1)
    """
    if form not in CONV_FORMS:
        raise ValueError(f"conv2d_nchw: form must be one of {CONV_FORMS}, got {form!r}")
    data, kernel = x, weight
    N, C, H, W = _shape(data)
    g = _ConvGeometry("conv2d_nchw", data, kernel, (C, H, W), _shape(kernel), stride,
                      padding, dilation, groups)
    if form == "winograd":
        _check(_winograd_applies(g),
               f"conv2d_nchw: form='winograd' takes a dense 3x3 stride-1 convolution, "
               f"got kernel {_shape(kernel)}, stride {(g.sh, g.sw)}, dilation "
               f"{(g.dh, g.dw)}, groups {g.groups}")
        return _conv2d_nchw_winograd(data, kernel, g, name)
    if form == "auto" and _winograd_pays(N, g):
        return _conv2d_nchw_winograd(data, kernel, g, name)
    if form == "channels" and g.groups == 1 or form == "auto" and _channels_pay(N, g):
        return _conv2d_nchw_channels(data, kernel, g, name)
    if g.groups == 1 and (g.sh, g.sw) == (1, 1):
        return _conv2d_nchw_flat(data, kernel, g, (H, W), name, in_place=form == "auto")
    if g.groups == 1 and g.KH == g.KW == 1 and (g.pt, g.pl, g.pb, g.pr) == (0, 0, 0, 0):
        # a strided 1x1 (a residual projection): the product over the image it samples
        sampled = td.compute((data.shape[0], C, g.OH, g.OW),
                             lambda b, c, y, x: data[b, c, y * g.sh, x * g.sw],
                             name=f"{name}.sampled")
        unit = _ConvGeometry("conv2d_nchw", sampled, kernel, (C, g.OH, g.OW),
                             _shape(kernel), 1, 0, 1, 1)
        return _conv2d_nchw_flat(sampled, kernel, unit, (g.OH, g.OW), name,
                                 in_place=form == "auto")
    if g.sw > 1:
        phases = _column_phases(data, g, (H, W), name)
        return td.compute(
            (data.shape[0], g.F, g.OH, g.OW),
            lambda b, f, y, x: td.sum(
                phases[b, g.channel(f), g.rows(y), (g.rx * g.dw) % g.sw,
                       x + (g.rx * g.dw) // g.sw] * kernel[f, g.rc, g.ry, g.rx],
                axis=[g.rc, g.ry, g.rx]),
            name=name)
    padded = pad(data, (0, 0, g.pt, g.pl), (0, 0, g.pb, g.pr), name=f"{name}.pad")
    return td.compute(
        (data.shape[0], g.F, g.OH, g.OW),
        lambda b, f, y, x: td.sum(padded[b, g.channel(f), g.rows(y), g.cols(x)]
                                  * kernel[f, g.rc, g.ry, g.rx], axis=[g.rc, g.ry, g.rx]),
        name=name)


def _winograd_applies(g) -> bool:
    """Whether Winograd's F(2x2, 3x3) computes the convolution: a dense 3x3 stride-1
    window, undilated."""
    return g.groups == 1 and (g.KH, g.KW, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)


def _winograd_pays(n, g) -> bool:
    """Whether ``form="auto"`` takes Winograd's form (``_winograd_applies``): over
    ``WINOGRAD_MIN_TILES`` 2x2 tiles and ``WINOGRAD_MIN_CHANNELS``, its transformed input
    and products within ``WINOGRAD_MAX_TRANSFORMED_BYTES``."""
    if not (_winograd_applies(g) and _is_int(n)):
        return False
    tiles = n * -(-g.OH // WINOGRAD_TILE) * -(-g.OW // WINOGRAD_TILE)
    transformed = 16 * (g.Cg + g.F) * tiles * 4
    return tiles >= WINOGRAD_MIN_TILES and transformed <= WINOGRAD_MAX_TRANSFORMED_BYTES \
        and min(g.Cg, g.F) >= WINOGRAD_MIN_CHANNELS


def _channels_pay(n, g) -> bool:
    """Whether ``form="auto"`` takes the channels form (``CHANNELS_MIN_POSITIONS``,
    ``CHANNELS_MIN_POINTWISE_REDUCTION``)."""
    if not (g.groups == 1 and g.F >= 16 and _is_int(n)
            and n * g.OH * g.OW >= CHANNELS_MIN_POSITIONS):
        return False
    if g.KH * g.KW > 1:
        return True
    return n >= 2 and g.Cg >= CHANNELS_MIN_POINTWISE_REDUCTION \
        and (g.pt, g.pl, g.pb, g.pr) == (0, 0, 0, 0)


def _conv2d_nchw_channels(data, kernel, g, name):
    """The output positions flattened, q = y*OW + x, each read from the padded input
    by its row and column:

        vec[b, f, q] = sum_{c, ry, rx} padded[b, c, (q // OW)*sh + ry*dh, (q % OW)*sw + rx*dw]
                                       * kernel[f, c, ry, rx]
        out[b, f, y, x] = vec[b, f, y*OW + x]

    The CPU template computes it with output channels in vector lanes (oneDNN's direct
    convolution): a register tile of a few positions by a few vectors of channels, a
    broadcast input element times a vector of packed weights per tap. Nothing is
    computed past the output's width (the padded-width form computes OW + pad columns
    a row: 15 for 14), the tile's positions run on across rows (a 7-wide image fills
    6-position tiles), and a strided window reads its input as any other."""
    N = data.shape[0]
    padded = pad(data, (0, 0, g.pt, g.pl), (0, 0, g.pb, g.pr), name=f"{name}.pad")
    OW = g.OW
    vec = td.compute((N, g.F, g.OH * OW),
                     lambda b, f, q: td.sum(padded[b, g.rc, g.rows(q // OW), g.cols(q % OW)]
                                            * kernel[f, g.rc, g.ry, g.rx],
                                            axis=[g.rc, g.ry, g.rx]),
                     name=f"{name}.channels")
    return td.compute((N, g.F, g.OH, OW), lambda b, f, y, x: vec[b, f, y * OW + x],
                      name=name)


# Winograd's F(2x2, 3x3) (Lavin and Gray, 2016): a 2x2 block of outputs from the 4x4
# tile of input around it with 16 multiply-adds per input channel, where the window
# takes 36; the transforms below are its matrices B^T, G and A^T applied to one run
def _winograd_input(d):
    d0, d1, d2, d3 = d
    return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)


def _winograd_kernel(g):
    g0, g1, g2 = g
    return (g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2)


def _winograd_output(m):
    m0, m1, m2, m3 = m
    return (m0 + m1 + m2, m1 - m2 - m3)


def _pick(i, values):
    """``values[i]`` for an index ``i``: selects, folded away where ``i`` is a constant
    (a loop unrolled)."""
    out = values[-1]
    for k in range(len(values) - 2, -1, -1):
        out = td.if_then_else(i == k, values[k], out)
    return out


WINOGRAD_TILE = 2    # outputs a tile, each way
# "auto" takes Winograd's form for a 3x3 over at least this many tiles (batch x image):
# its 16 products have as many columns, and fewer leave the matmul template's panels
# part empty (b1 256->256 @14, 49 tiles: 2x slower than the channels form; b1 64->64
# @56, 784: 1.3x faster, b8 512->512 @7, 128: 1.2x) ...
WINOGRAD_MIN_TILES = 128
# ... whose transformed input and products (16 x (in + out channels) x tiles floats)
# stay within a last-level cache (b8 64->64 @56, 51 MB: 0.88x; b8 128->128 @28,
# 26 MB: 1.14x; b8 256->256 @14, 13 MB: 1.4x)
WINOGRAD_MAX_TRANSFORMED_BYTES = 32 << 20
# ... and of at least this many input and output channels: the products' reduction and
# rows, against transforms whose cost does not shrink with them (measured from 64 up)
WINOGRAD_MIN_CHANNELS = 64


def _conv2d_nchw_winograd(data, kernel, g, name):
    """A 3x3 stride-1 convolution by Winograd's F(2x2, 3x3), as TVM's
    ``conv2d_nchw_winograd``: the output in 2x2 tiles, ``t = (e, u)`` over the 4x4
    transformed tile,

        U[t, f, c] = (G g_fc G^T)[e, u]                  the kernel transformed
        V[t, c, p] = (B^T d_cp B)[e, u]                  each tile p = (b, ty, tx) of input
        M[t, f, p] = sum_c U[t, f, c] * V[t, c, p]        16 matrix products
        out[b, f, 2ty + i, 2tx + j] = (A^T M_fp A)[i, j]

    2.25x fewer multiply-adds than the window, in 16 matrix products the matmul template
    computes, at the cost of the transforms (memory: V and M are 4x the input and the
    output)."""
    N, C = _dim(data.shape[0]), g.Cg
    m = WINOGRAD_TILE
    th, tw = -(-g.OH // m), -(-g.OW // m)
    H, W = _dim(data.shape[2]), _dim(data.shape[3])
    padded = pad(data, (0, 0, g.pt, g.pl),
                 (0, 0, m * th + 2 - H - g.pt, m * tw + 2 - W - g.pl), name=f"{name}.pad")
    tiles = th * tw

    def kernel_rows(e, f, c, j):
        return _pick(e, _winograd_kernel(tuple(kernel[f, c, i, j] for i in range(3))))

    U = td.compute((16, g.F, C), lambda t, f, c: _pick(t % 4, _winograd_kernel(tuple(
        kernel_rows(t // 4, f, c, j) for j in range(3)))), name=f"{name}.winograd_kernel")

    def input_rows(e, b, c, ty, tx, j):
        return _pick(e, _winograd_input(tuple(padded[b, c, m * ty + i, m * tx + j]
                                              for i in range(4))))

    def input_tile(t, c, p):
        b, ty, tx = p // tiles, p % tiles // tw, p % tw
        return _pick(t % 4, _winograd_input(tuple(input_rows(t // 4, b, c, ty, tx, j)
                                                  for j in range(4))))

    V = td.compute((16, C, N * tiles), input_tile, name=f"{name}.winograd_input")
    rc = td.reduce_axis((0, C), "rc")
    M = td.compute((16, g.F, N * tiles),
                   lambda t, f, p: td.sum(U[t, f, rc] * V[t, rc, p], axis=rc),
                   name=f"{name}.winograd_product")

    def output(b, f, y, x):
        p = b * tiles + (y // m) * tw + x // m

        def rows(u):
            return _pick(y % m, _winograd_output(tuple(M[e * 4 + u, f, p] for e in range(4))))
        return _pick(x % m, _winograd_output(tuple(rows(u) for u in range(4))))

    return td.compute((N, g.F, g.OH, g.OW), output, name=name, tag=WINOGRAD_TAG)


# the tag of the output stage of ``_conv2d_nchw_winograd``
WINOGRAD_TAG = "conv2d_nchw.winograd"


def _column_phases(data, g, hw, name):
    """The padded input with its columns split by the horizontal stride's phase,
    ``phases[b, c, y, ph, q] = padded[b, c, y, q*sw + ph]``: output column ``x`` reads
    column ``x*sw + rx*dw``, which is ``phases[..., (rx*dw) % sw, x + (rx*dw) // sw]``,
    so a vector of consecutive outputs reads consecutive elements, not every sw-th
    (a gather)."""
    H, W = hw
    rows = g.pt + H + g.pb
    columns = -(-(g.pl + W + g.pr) // g.sw)

    def value(b, c, y, phase, q):
        col, row = q * g.sw + phase - g.pl, y - g.pt
        inside = td.all(row >= 0, row < H, col >= 0, col < W)
        return td.if_then_else(inside, data[b, c, row, col], td.const(0.0, data.dtype))

    return td.compute((data.shape[0], data.shape[1], rows, g.sw, columns), value,
                      name=f"{name}.pad")


# the tag of a padded-width form computed in the output's place (``_conv2d_nchw_flat``)
FLAT_IN_PLACE_TAG = "conv2d_nchw.flat_in_place"


def _conv2d_nchw_flat(data, kernel, g, hw, name, in_place=False):
    """Each channel of the padded input is one row-major run of Wp-wide rows; the
    convolution is computed for every position p = y*Wp + x of that run, including the
    columns past each output row, which are then dropped:

        flat[b, f, p] = sum_{c, ry, rx} run[b, c, p + ry*dh*Wp + rx*dw - pl] * kernel[f, c, ry, rx]
        out[b, f, y, x] = flat[b, f, y*Wp + x]

    so one vector of outputs reads one contiguous span of the input for every tap (a
    matmul-like micro-kernel, no gathers), at the cost of computing (Wp - OW)/Wp more.
    A row's right padding is also the next row's left padding, so Wp = W + max(pl, pr),
    not W + pl + pr: a column left of a row reads the zeros that end the row before
    (a zero row leads, for the first), one right of it the zeros that end its own.
    (Wp is at least OW, for paddings wider than the window.)

    Where the padded width is the output's (a 1x1 without horizontal padding) the crop
    is a copy; ``in_place`` then computes the output itself, tagged
    ``FLAT_IN_PLACE_TAG``, for a template that flattens its (y, x) again (the CPU's:
    b8 1x1 256->128 @56 wrote and copied a 12.8 MB intermediate)."""
    H, W = hw
    Wp = max(W + max(g.pl, g.pr), g.OW)
    lead_rows = 1 if g.pl else 0
    rows = lead_rows + g.pt + H + g.pb
    last = (g.OH - 1 + (g.KH - 1) * g.dh) * Wp + (Wp - 1) + (g.KW - 1) * g.dw - g.pl \
        + lead_rows * Wp   # the largest position any tap reads
    extra_rows = max(0, last // Wp + 1 - rows)
    padded = pad(data, (0, 0, lead_rows + g.pt, 0), (0, 0, g.pb + extra_rows, Wp - W),
                 name=f"{name}.pad")

    def tap(b, p):
        e = p + g.ry * (g.dh * Wp) + g.rx * g.dw + (lead_rows * Wp - g.pl)
        return padded[b, g.rc, e // Wp, e % Wp]

    def product(b, f, p):
        return td.sum(tap(b, p) * kernel[f, g.rc, g.ry, g.rx], axis=[g.rc, g.ry, g.rx])

    if in_place and Wp == g.OW:
        return td.compute((data.shape[0], g.F, g.OH, g.OW),
                          lambda b, f, y, x: product(b, f, y * Wp + x), name=name,
                          tag=FLAT_IN_PLACE_TAG)
    flat = td.compute((data.shape[0], g.F, g.OH * Wp), product, name=f"{name}.flat")
    return td.compute((data.shape[0], g.F, g.OH, g.OW),
                      lambda b, f, y, x: flat[b, f, y * Wp + x], name=name)


NHWC_FORMS = (None, "direct", "implicit_gemm")
IMPLICIT_GEMM_TAG = "conv2d_nhwc.implicit_gemm"


def conv2d_nhwc(x, weight, stride=1, padding=0, dilation=1, groups: int = 1,
                name: str = "conv2d_nhwc", form: str | None = None):
    """2-d convolution: ``x`` (N, H, W, C), ``weight`` (KH, KW, C/groups, F) → (N, OH, OW, F);
    options as ``conv2d_nchw``.

    ``form``: None or ``"direct"`` sums over the window where each output is computed;
    ``"implicit_gemm"`` (ungrouped) is the matrix product of the (N*OH*OW) x
    (KH*KW*C) matrix of input windows by the weights seen as (KH*KW*C) x F, gathered
    where it is read (``_conv2d_nhwc_implicit_gemm``): the GPU template runs it on
    tensor cores for float16/bfloat16 (``schedules/cuda/conv2d.py``).

    >>> y = td.ops.conv2d_nhwc(x, weight, stride=2, padding=(1, 1))
    """
    if form not in NHWC_FORMS:
        raise ValueError(f"conv2d_nhwc: form must be one of {NHWC_FORMS}, got {form!r}")
    data, kernel = x, weight
    N, H, W, C = _shape(data)
    KH, KW, Cg, F = _shape(kernel)
    g = _ConvGeometry("conv2d_nhwc", data, kernel, (C, H, W), (F, Cg, KH, KW), stride,
                      padding, dilation, groups)
    padded = pad(data, (0, g.pt, g.pl, 0), (0, g.pb, g.pr, 0), name=f"{name}.pad")
    if form == "implicit_gemm":
        _check(g.groups == 1, f"conv2d_nhwc: form='implicit_gemm' takes an ungrouped "
                              f"convolution, got groups={g.groups}")
        return _conv2d_nhwc_implicit_gemm(padded, kernel, g, N, name)
    return td.compute(
        (data.shape[0], g.OH, g.OW, g.F),
        lambda b, y, x, f: td.sum(padded[b, g.rows(y), g.cols(x), g.channel(f)]
                                  * kernel[g.ry, g.rx, g.rc, f], axis=[g.ry, g.rx, g.rc]),
        name=name)


def _conv2d_nhwc_implicit_gemm(padded, kernel, g, batch, name):
    """The convolution as one matrix product over the output positions p = (b, y, x)
    and the window offsets k = (ry, rx, c), channels innermost:

        windows[p, k] = padded[b, y*sh + ry*dh, x*sw + rx*dw, c]
        taps[k, f]    = kernel[ry, rx, c, f]                (the weights' own order)
        product[p, f] = sum_k windows[p, k] * taps[k, f]    (tagged ``IMPLICIT_GEMM_TAG``)
        out[b, y, x, f] = product[(b*OH + y)*OW + x, f]     (the same memory order)

    ``windows`` is never stored whole: a template inlines it (and the padding) into
    the tiles it stages, so a tile's k-run of channels is one contiguous read of the
    input, zero where the window leaves the image. float16/bfloat16 operands are
    multiplied and summed in float32, as tensor cores do; the output has the input's
    type."""
    Cg, KW = g.Cg, g.KW
    positions, depth = batch * g.OH * g.OW, g.KH * g.KW * Cg
    acc = "float32" if padded.dtype in ("float16", "bfloat16") else padded.dtype

    def window(p, k):
        b, y, x = p // (g.OH * g.OW), p // g.OW % g.OH, p % g.OW
        ry, rx, c = k // (KW * Cg), k // Cg % KW, k % Cg
        return padded[b, y * g.sh + ry * g.dh, x * g.sw + rx * g.dw, c]

    windows = td.compute((positions, depth), window, name=f"{name}.windows")
    taps = td.compute((depth, g.F), lambda k, f: kernel[k // (KW * Cg), k // Cg % KW,
                                                        k % Cg, f], name=f"{name}.taps")
    k = td.reduce_axis((0, depth), "rk")
    product = td.compute(
        (positions, g.F),
        lambda p, f: td.sum(windows[p, k].astype(acc) * taps[k, f].astype(acc), axis=k),
        name=f"{name}.product", tag=IMPLICIT_GEMM_TAG)
    return td.compute((batch, g.OH, g.OW, g.F),
                      lambda b, y, x, f: product[(b * g.OH + y) * g.OW + x, f]
                      .astype(padded.dtype), name=name)


# ---------------------------------------------------------------- pooling


def _pool(data, kernel_size, stride, padding, what):
    _check(data.ndim == 4, f"{what}: expected NCHW data, got shape {_shape(data)}")
    kh, kw = _pair(kernel_size, f"{what} kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, f"{what} stride")
    pt, pl, pb, pr = _padding4(padding, what)
    N, C, H, W = _shape(data)
    OH = _conv_out(H, kh, sh, pt, pb, 1, what)
    OW = _conv_out(W, kw, sw, pl, pr, 1, what)
    return (kh, kw), (sh, sw), (pt, pl, pb, pr), (OH, OW)


def max_pool2d(x, kernel_size, stride=None, padding=0, name: str = "max_pool2d"):
    """Max over ``kernel_size`` windows of NCHW ``x`` (padding never wins the max), as
    PyTorch's ``max_pool2d``: ``kernel_size`` and ``stride`` (default: ``kernel_size``) an
    int or (h, w); ``padding`` an int, (h, w) or (top, left, bottom, right).

    >>> y = td.ops.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    """
    data = x
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (OH, OW) = _pool(data, kernel_size, stride, padding,
                                                           "max_pool2d")
    padded = pad(data, (0, 0, pt, pl), (0, 0, pb, pr), value=-math.inf, name=f"{name}.pad")
    ry, rx = td.reduce_axis((0, kh), "ry"), td.reduce_axis((0, kw), "rx")
    return td.compute((data.shape[0], data.shape[1], OH, OW),
                      lambda b, c, y, x: td.max(padded[b, c, y * sh + ry, x * sw + rx],
                                                axis=[ry, rx]), name=name)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad: bool = True,
               name: str = "avg_pool2d"):
    """Mean over ``kernel_size`` windows of NCHW ``x``; options as ``max_pool2d``,
    ``count_include_pad`` as in PyTorch.

    >>> y = td.ops.avg_pool2d(x, kernel_size=2)
    """
    data = x
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (OH, OW) = _pool(data, kernel_size, stride, padding,
                                                           "avg_pool2d")
    H, W = _dim(data.shape[2]), _dim(data.shape[3])
    padded = pad(data, (0, 0, pt, pl), (0, 0, pb, pr), name=f"{name}.pad")
    ry, rx = td.reduce_axis((0, kh), "ry"), td.reduce_axis((0, kw), "rx")
    total = td.compute((data.shape[0], data.shape[1], OH, OW),
                       lambda b, c, y, x: td.sum(padded[b, c, y * sh + ry, x * sw + rx],
                                                 axis=[ry, rx]), name=f"{name}.sum")
    if count_include_pad:
        return td.compute(total.shape, lambda b, c, y, x: total[b, c, y, x] * (1.0 / (kh * kw)),
                          name=name)

    def count(y, x):
        h0, w0 = y * sh - pt, x * sw - pl
        hs = td.minimum(h0 + kh, H) - td.maximum(h0, 0)
        ws = td.minimum(w0 + kw, W) - td.maximum(w0, 0)
        return (hs * ws).astype(data.dtype)

    return td.compute(total.shape, lambda b, c, y, x: total[b, c, y, x] / count(y, x), name=name)


# ---------------------------------------------------------------- elementwise


def _broadcast_shape(a, b, what: str):
    sa, sb = list(a.shape), list(b.shape)
    nd = max(len(sa), len(sb))
    sa, sb = [None] * (nd - len(sa)) + sa, [None] * (nd - len(sb)) + sb
    out = []
    for x, y in zip(sa, sb):
        dx, dy = (None if x is None else _dim(x)), (None if y is None else _dim(y))
        if dx is None or dx == 1:
            out.append(y if y is not None else x)
        elif dy is None or dy == 1 or _same_extent(dx, dy):
            out.append(x)
        else:
            raise ValueError(f"{what}: shapes {_shape(a)} and {_shape(b)} do not broadcast")
    return tuple(out)


def _broadcast_read(t, idx):
    """``t`` read at the trailing indices of ``idx``, size-1 dimensions pinned to 0."""
    idx = idx[len(idx) - t.ndim:]
    return t[tuple(0 if isinstance(d, n.IntImm) and d.value == 1 else i
                   for i, d in zip(idx, t.shape))]


def _binary(fn, what):
    def op(a, b, name: str = what):
        if not hasattr(b, "op"):  # a Python number
            return td.compute(a.shape, lambda *i: fn(a[i], b), name=name)
        if not hasattr(a, "op"):
            return td.compute(b.shape, lambda *i: fn(a, b[i]), name=name)
        shape = _broadcast_shape(a, b, what)
        return td.compute(shape, lambda *i: fn(_broadcast_read(a, i), _broadcast_read(b, i)),
                          name=name)
    op.__name__ = what
    op.__doc__ = (f"Elementwise {what} with numpy broadcasting (a tensor or a number per "
                  f"side), as ``numpy.{what}``.\n\n    >>> c = td.ops.{what}(a, b)\n    ")
    return op


add = _binary(lambda x, y: x + y, "add")
subtract = _binary(lambda x, y: x - y, "subtract")
multiply = _binary(lambda x, y: x * y, "multiply")
divide = _binary(lambda x, y: x / y, "divide")
maximum = _binary(td.maximum, "maximum")
minimum = _binary(td.minimum, "minimum")


def take(x, indices, axis: int = 0, name: str = "take"):
    """``numpy.take(x, indices, axis)`` (TVM's ``topi.take``): slices of ``x`` along
    ``axis`` picked by an integer tensor. The indices are data, so the compiler cannot
    bound them: the generated code checks each one as it runs and the call raises
    ``ValueError`` for one outside ``[0, x.shape[axis])`` (``td.ops.take(...,
    check_indices=False)`` skips the check, for trusted indices).

    >>> y = td.ops.take(x, [2, 0], axis=1)
    """
    data = x
    if not _is_int(axis):
        raise TypeError(f"take: axis must be an int, got {axis!r}")
    if not isinstance(axis, int) or not -data.ndim <= axis < data.ndim:
        raise ValueError(f"take: axis must be an int in [{-data.ndim}, {data.ndim}), "
                         f"got {axis!r}")
    if not indices.dtype.startswith(("int", "uint")):
        raise TypeError(f"take: indices must be an integer tensor, got {indices.dtype}")
    axis %= data.ndim
    shape = data.shape[:axis] + indices.shape + data.shape[axis + 1:]

    def f(*i):
        lead, picked, rest = i[:axis], i[axis:axis + indices.ndim], i[axis + indices.ndim:]
        return data[lead + (indices[picked].astype("int64"),) + rest]

    return td.compute(shape, f, name=name)


def relu(x, name: str = "relu"):
    """``max(x, 0)`` elementwise.

    >>> y = td.ops.relu(x)
    """
    return td.compute(x.shape, lambda *i: td.maximum(x[i], td.const(0, x.dtype)), name=name)


def gelu(x, approximate: str = "none", name: str = "gelu"):
    """GELU: ``x * Phi(x)``; ``approximate="tanh"`` for the tanh form (as in PyTorch).

    >>> y = td.ops.gelu(x, approximate="tanh")
    """
    if approximate == "none":
        return td.compute(x.shape, lambda *i: 0.5 * x[i] * (1.0 + td.erf(x[i] * (1 / math.sqrt(2)))),
                          name=name)
    if approximate == "tanh":
        c = math.sqrt(2 / math.pi)
        return td.compute(x.shape, lambda *i: 0.5 * x[i] * (
            1.0 + td.tanh(c * (x[i] + 0.044715 * x[i] * x[i] * x[i]))), name=name)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


# ---------------------------------------------------------------- reductions


def _sum_dtype(dtype: str) -> str:
    """numpy's accumulator for ``sum``: small integers and bool widen to 64 bits (numpy's
    uint64 for unsigned; tensordsl has no uint64, so int64), floats stay."""
    return "int64" if dtype == "bool" or dtype.startswith(("int", "uint")) else dtype


def _mean_dtype(dtype: str) -> str:
    """numpy's result type of ``mean``: float64 for integers and bool, floats stay."""
    return "float64" if dtype == "bool" or dtype.startswith(("int", "uint")) else dtype


def _reduce(x, axis, keepdims, reducer, what, name, dtype=None, tag=""):
    axes = _axes(axis, x.ndim, what)
    raxes = {a: td.reduce_axis((0, x.shape[a]), f"r{a}") for a in axes}
    kept = [d for d in range(x.ndim) if d not in raxes]
    shape = tuple(1 if d in raxes else x.shape[d] for d in range(x.ndim)) if keepdims \
        else tuple(x.shape[d] for d in kept)

    def f(*idx):
        if keepdims:
            src = tuple(raxes[d] if d in raxes else idx[d] for d in range(x.ndim))
        else:
            it = iter(idx)
            src = tuple(raxes[d] if d in raxes else next(it) for d in range(x.ndim))
        value = x[src] if dtype is None or dtype == x.dtype else x[src].astype(dtype)
        return reducer(value, axis=[raxes[a] for a in axes])

    if not shape:
        shape = (1,)
        g = f
        f = lambda i: g()  # noqa: E731 (a full reduction gives a 1-element tensor)
    return td.compute(shape, f, name=name, tag=tag)


def reduce_sum(x, axis=None, keepdims: bool = False, dtype: str | None = None,
               name: str = "reduce_sum"):
    """Sum over ``axis`` (None: all; an int or a tuple), as ``numpy.sum``: integers and
    bool accumulate in int64 unless ``dtype`` says otherwise.

    >>> s = td.ops.reduce_sum(x, axis=1, keepdims=True)
    """
    acc = _sum_dtype(x.dtype) if dtype is None else dtype
    return _reduce(x, axis, keepdims, td.sum, "reduce_sum", name, acc)


def reduce_max(x, axis=None, keepdims: bool = False, name: str = "reduce_max"):
    """Maximum over ``axis`` (None: all; an int or a tuple), as ``numpy.max``; an empty
    axis raises ``ValueError``.

    >>> m = td.ops.reduce_max(x, axis=-1)
    """
    for a in _axes(axis, x.ndim, "reduce_max"):
        if _dim(x.shape[a]) == 0:
            # numpy's rule: a maximum over nothing has no identity to return
            raise ValueError(f"reduce_max: axis {a} of the input (shape {_shape(x)}) is "
                             "empty, and a maximum over zero elements is undefined")
    return _reduce(x, axis, keepdims, td.max, "reduce_max", name)


def reduce_mean(x, axis=None, keepdims: bool = False, dtype: str | None = None,
                name: str = "reduce_mean"):
    """Mean over ``axis`` (None: all; an int or a tuple), as ``numpy.mean``: float64 for
    integers and bool unless ``dtype`` says otherwise; an empty axis gives NaN.

    >>> m = td.ops.reduce_mean(x, axis=(0, 1))
    """
    acc = _mean_dtype(x.dtype) if dtype is None else dtype
    total = _reduce(x, axis, keepdims, td.sum, "reduce_mean", f"{name}.sum", acc)
    count = 1
    for a in _axes(axis, x.ndim, "reduce_mean"):
        count *= _dim(x.shape[a])
    if isinstance(count, int) and count == 0:
        # the mean of nothing is 0/0: NaN, as numpy returns
        return td.compute(total.shape, lambda *i: total[i] * math.nan, name=name)
    if not isinstance(count, int):
        # a symbolic count may be 0 at run time: divide, so 0/0 gives NaN
        return td.compute(total.shape, lambda *i: total[i] / count.astype(total.dtype),
                          name=name)
    return td.compute(total.shape, lambda *i: total[i] * (1.0 / count), name=name)


def _stability_shift(x, axis, name):
    """The row maximum subtracted before ``exp`` for numerical stability. The result
    does not depend on it mathematically, so autodiff treats it as a constant (as JAX's
    ``softmax`` stops its gradient): no argmax in the derived kernels."""
    return _reduce(x, axis, True, td.max, "softmax", f"{name}.max", tag=STOP_GRADIENT_TAG)


def _last_axis(x, axis, what):
    (a,) = _axes(axis, x.ndim, what)
    return a


def softmax(x, axis: int = -1, name: str = "softmax"):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``.

    >>> p = td.ops.softmax(x, axis=-1)
    """
    a = _last_axis(x, axis, "softmax")
    m = _stability_shift(x, a, name)
    e = td.compute(x.shape, lambda *i: td.exp(x[i] - m[_pin(i, a)]), name=f"{name}.exp")
    s = reduce_sum(e, axis=a, keepdims=True, name=f"{name}.sum")
    # one division per row, then multiplies (a vector division costs ~10 multiplies)
    inv = td.compute(s.shape, lambda *i: 1.0 / s[i], name=f"{name}.inv")
    return td.compute(x.shape, lambda *i: e[i] * inv[_pin(i, a)], name=name)


def log_softmax(x, axis: int = -1, name: str = "log_softmax"):
    """``x - max - log(sum(exp(x - max)))`` along ``axis``.

    >>> p = td.ops.log_softmax(x, axis=-1)
    """
    a = _last_axis(x, axis, "log_softmax")
    m = _stability_shift(x, a, name)
    r = td.reduce_axis((0, x.shape[a]), "r")
    lse = td.compute(m.shape, lambda *i: td.sum(td.exp(x[_put(i, a, r)] - m[i]), axis=r),
                     name=f"{name}.sum")
    return td.compute(x.shape, lambda *i: x[i] - m[_pin(i, a)] - td.log(lse[_pin(i, a)]),
                      name=name)


def layer_norm(x, gamma, beta, axis=-1, eps: float = 1e-5, name: str = "layer_norm",
               form: str = "two_pass"):
    """Normalize over the trailing ``axis`` dimensions, then scale by ``gamma`` and shift
    by ``beta`` (TVM's names; PyTorch's ``weight`` and ``bias``), of the normalized shape.

    ``form``: ``"two_pass"`` (the mean, then the mean of the squared deviations: two
    reductions; what the templates use: on the GPU the row stays in registers between
    them) or ``"welford"`` (the count, mean and sum of squared deviations of each row as
    one tuple reduction, partial results merged by Chan's formula: one pass over the row,
    as sound numerically, for rows read once from memory; it divides once per element,
    so the GPU's row of 1024 over 128 threads takes 688 instructions a thread against
    264). Autodiff takes ``"two_pass"`` (the Welford reducer is a user reducer to it).

    >>> y = td.ops.layer_norm(x, gamma, beta, axis=-1, eps=1e-5)
    """
    _check(form in ("two_pass", "welford"),
           f"layer_norm: form must be 'two_pass' or 'welford', got {form!r}")
    axes = _axes(axis, x.ndim, "layer_norm")
    _check(axes == tuple(range(x.ndim - len(axes), x.ndim)),
           f"layer_norm: axis must be the trailing dimensions, got {axis!r}")
    norm_shape = tuple(_dim(d) for d in x.shape[x.ndim - len(axes):])
    for t, what in ((gamma, "gamma"), (beta, "beta")):
        _check(_shape(t) == norm_shape, f"layer_norm: {what} must have shape {norm_shape}, "
                                        f"got {_shape(t)}")
    count = 1
    for d in norm_shape:
        count *= d
    if form == "welford":
        _, mean, squares = _welford_moments(x, axes, name)
        var = td.compute(mean.shape, lambda *i: squares[i] * (1.0 / count), name=f"{name}.var")
    else:
        mean = reduce_mean(x, axis=axes, keepdims=True, name=f"{name}.mean")
        diff2 = td.compute(x.shape, lambda *i: (x[i] - mean[_pin_many(i, axes)]) *
                           (x[i] - mean[_pin_many(i, axes)]), name=f"{name}.sq")
        var = reduce_mean(diff2, axis=axes, keepdims=True, name=f"{name}.var")
    # one reciprocal square root per row, then multiplies (as PyTorch does)
    rstd = td.compute(var.shape, lambda *i: 1.0 / td.sqrt(var[i] + eps), name=f"{name}.rstd")
    k = len(axes)
    return td.compute(x.shape, lambda *i: (x[i] - mean[_pin_many(i, axes)])
                      * rstd[_pin_many(i, axes)] * gamma[i[-k:]] + beta[i[-k:]], name=name)


def _welford_combine(a, b):
    """Two partial (count, mean, sum of squared deviations) merged (Chan et al.); an
    element enters as (1, x, 0), so this is Welford's update too."""
    count = a[0] + b[0]
    share = td.select(count > 0.0, b[0] / count, td.const(0.0, count.dtype))
    delta = b[1] - a[1]
    return count, a[1] + delta * share, a[2] + b[2] + delta * delta * a[0] * share


WELFORD = td.comm_reducer(_welford_combine,
                          lambda *dtypes: tuple(td.const(0.0, d) for d in dtypes),
                          name="welford")


def _welford_moments(x, axes, name):
    """(count, mean, sum of squared deviations) of ``x`` over ``axes`` (kept, of extent
    1): one tuple reduction."""
    rs = [td.reduce_axis((0, x.shape[a]), f"r{k}") for k, a in enumerate(axes)]
    shape = tuple(1 if d in axes else x.shape[d] for d in range(x.ndim))
    dtype = x.dtype if x.dtype in ("float32", "float64") else "float32"

    def row(*i):
        idx = list(i)
        for r, a in zip(rs, axes):
            idx[a] = r
        value = x[tuple(idx)].astype(dtype)
        return WELFORD((td.const(1.0, dtype), value, td.const(0.0, dtype)), axis=rs)
    return td.compute(shape, row, name=f"{name}.moments")


def _pin(idx, axis):
    return tuple(0 if d == axis else i for d, i in enumerate(idx))


def _pin_many(idx, axes):
    return tuple(0 if d in axes else i for d, i in enumerate(idx))


def _put(idx, axis, r):
    return tuple(r if d == axis else i for d, i in enumerate(idx))


# ---------------------------------------------------------------- training layers


def tanh(x, name: str = "tanh"):
    """``tanh(x)`` elementwise.

    >>> y = td.ops.tanh(x)
    """
    return td.compute(x.shape, lambda *i: td.tanh(x[i]), name=name)


def sigmoid(x, name: str = "sigmoid"):
    """``1 / (1 + exp(-x))`` elementwise.

    >>> y = td.ops.sigmoid(x)
    """
    return td.compute(x.shape, lambda *i: td.sigmoid(x[i]), name=name)


def _reshaped(shape, size, what: str) -> tuple:
    """``shape`` with its one ``-1`` resolved so that it holds ``size`` elements."""
    if _is_int(shape):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(_is_int(d) for d in shape):
        raise TypeError(f"{what}: shape must be a tuple of ints, got {shape!r}")
    if sum(1 for d in shape if d == -1) > 1 or any(d < -1 for d in shape):
        raise ValueError(f"{what}: shape may hold one -1 and sizes >= 0, got {shape!r}")
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        _check(known > 0 and size % known == 0,
               f"{what}: cannot reshape {size} elements into {tuple(shape)}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    _check(math.prod(shape) == size, f"{what}: cannot reshape {size} elements into "
                                     f"{tuple(shape)}")
    return tuple(shape)


def reshape(x, shape, name: str = "reshape"):
    """``numpy.reshape(x, shape)`` (row-major; one size may be -1). Two index maps, each
    a form the index solver inverts exactly, so the derived gradient is a reshape back
    (a gather, never a scatter):

        flat[p] = x[p // s0, (p // s1) % d1, ...]        (the input, row-major)
        out[i0, i1, ...] = flat[i0 * t0 + i1 * t1 + ...]  (the output's row-major position)

    ``flat`` is inlined into ``out`` when scheduled: one pass, no copy in between.

    >>> y = td.ops.reshape(x, (8, -1))
    """
    in_shape = _shape(x)
    _check(all(isinstance(d, int) for d in in_shape),
           f"reshape: the input's sizes must be constants, got {in_shape}")
    size = math.prod(in_shape)
    out_shape = _reshaped(shape, size, "reshape") or (1,)
    in_strides = [math.prod(in_shape[d + 1:]) for d in range(len(in_shape))]
    out_strides = [math.prod(out_shape[d + 1:]) for d in range(len(out_shape))]

    def unravel(p, k):
        # the plain form of each digit (no // 1, no % of the leading one): the solver
        # inverts it exactly
        q = p // in_strides[k] if in_strides[k] != 1 else p
        return q % in_shape[k] if k else q

    flat = td.compute((size,), lambda p: x[tuple(unravel(p, k) for k in range(x.ndim))],
                      name=f"{name}.flat")
    return td.compute(out_shape, lambda *i: flat[sum(v * s for v, s in zip(i, out_strides))],
                      name=name)


def bias_add(x, bias, axis: int = 1, name: str = "bias_add"):
    """``x + bias`` with the 1-d ``bias`` along ``axis`` (TVM's ``nn.bias_add``; a
    convolution's bias is ``bias_add(y, b, axis=1)`` on NCHW).

    >>> y = td.ops.bias_add(x, b, axis=1)
    """
    (a,) = _axes(axis, x.ndim, "bias_add")
    _check(bias.ndim == 1 and _same_extent(_dim(bias.shape[0]), _dim(x.shape[a])),
           f"bias_add: bias must have shape ({_dim(x.shape[a])},) for x of shape "
           f"{_shape(x)} and axis {axis}, got {_shape(bias)}")
    return td.compute(x.shape, lambda *i: x[i] + bias[i[a]], name=name)
