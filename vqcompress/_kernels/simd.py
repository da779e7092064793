"""Vector operations written as LLVM IR because Numba's vectorisers will not emit them.

``gather_sum(acc, table, codes, n, K)`` adds to ``acc[l]``, for the ``LANES`` lanes at once,
``table[i*K + codes[i, l]]`` over the n code positions i in order: a load of ``LANES`` codes,
with AVX-512 one ``vgatherdps`` of 16 table entries and one vector add per position, the
running sum in a register; elsewhere 16 scalar sums, one load and one add each per
position (see _sum_by_loads: faster than AVX2's gathers on AMD Zen 3).  Each lane is one
float32 add per position, in the caller's order, so the result is the same everywhere.
``gather_set(dst, table, codes)`` is one ``llvm.masked.gather`` stored as it is:
``dst[l] = table[codes[l]]`` (LLVM lowers it to scalar loads where the gather instruction
is missing or, by its cost model, slow).

``permute_set(dst, table, codes)`` is gather_set for a table of at most ``LANES`` entries
(every code below ``LANES``): with AVX-512 the table sits in one register and a single
``vpermps`` picks the lanes; with AVX2 its two halves sit in two 8-float registers, each
eight codes pick from both and a compare keeps the right one; elsewhere it is the gather.
Decoding one 256x384 tile of 4-bit k-means codes takes 30.2 us this way on an AVX-512
machine, 22.0 us with AVX2 on an AMD EPYC where the gather took 43.5
(benchmarks/bench_kernel_parts.py).  ``permute_set2(dst, table, codes, n)`` and
``permute_set32`` decode n pairs of ``LANES`` codes from a table of 16 or 32 floats: with
AVX2 and 8-bit codes from the table's byte planes, built once (each float's four bytes
picked by ``vpshufb``, in-lane shuffles, where ``vpermps`` crosses lanes and is slow on
AMD Zen 3), elsewhere as permute_set / gather_set do: on the same EPYC the 256x384 tile
then took 12.8-13.6 us (bench_kernel_parts.py --part 2, two runs).

``permute_dot(table, codes, x, n)``, ``permute_dot32`` and ``gather_dot`` decode groups of
scalar codes the same ways and multiply them into running sums with an input, returning
the dot product of a row of k-means codes with it (``lut.scalar_dot`` at batch 1); no
decoded row is stored.  ``dot(a, x, n)`` is the same sum for a decoded row (at larger
batches a row is decoded once and multiplied by every input).

``codeword_dot1`` .. ``codeword_dot4`` compute 8 rows of PQ/RQ codes (1 to 4 stages,
blocks of 8) times an input with no table: per block, each row's codewords loaded as
8-float vectors and multiplied into the row's running vector, stage by stage;
``lut.codeword_rows`` at batch 1-7 on layers with few rows per table entry.

Numba caches a kernel with the file that defines it (lut.py, say), keyed to that file's
time stamp only: after editing this file, delete the callers' ``__pycache__/*.nb?`` files,
or they run the old code.

The lookup kernels in ``lut.py`` are built on these.  No bounds are checked: callers pass
``LANES`` codes per position, each below K (below the table's length for gather_set).

``dot_table4`` / ``dot_table1`` build a lookup table: the dot products of one input block
with every codeword; ``dot_table_x4`` the tables of four blocks that share a codebook (see
their comment below).

``dot_table_batch`` and ``gather_batch_sum`` are the batch-major twins of dot_table and
gather_sum: each table entry holds the products of ``BATCH`` inputs, so one code read and
one vector add serve them all (``lut.lookup_batch``).

``decode_row1`` .. ``decode_row4(out, books, codes, off, n, per_block)`` decode a row of
PQ/RQ codes (1 to 4 stages, blocks of 8) into a dense row, each block's codewords loaded
as vectors and added in stage order (Numba's own loop could not tell the row apart from
the codebook, so it stored after every load and LLVM kept them scalar).  They replace
Numba loops over 8-float copies and sums: as fast for one and two stages, which are
bound by writing the tile, and for three several times faster (a scratch A/B; the tiles'
decode times are in benchmarks/bench_kernel_parts.py --part 2).  No bounds are checked.

``nearest4(ct, X, i, labels, dists)`` and ``nearest1`` find the nearest center of rows
``i .. i+3`` (or row ``i``) of X: for each group of ``LANES`` centers (8 in float64), one
vector of squared distances per row, accumulated over the dimensions in registers
(``(c - x)^2`` by subtraction then fused multiply-add, in dimension order), and a lane-wise
running minimum with its index; at the end the smallest lane, ties to the lowest center
index.  Four rows share each load of the centers and keep four independent chains in
flight.  Numba's own loop kept the distances in memory and needed a second pass for the
argmin: on 73,728 8-dim rows against 256 centers, one thread, it took 14.6 ms (scratch);
this kernel 5.8-9.3 ms, faiss's exact search 9.6-13.6 (benchmarks/bench_kernel_parts.py).  The
caller passes the centers transposed, ``ct`` of shape (d, kp) with kp a multiple of
``LANES`` (columns past the real centers repeat center 0, which then always wins the tie),
and rows ``i .. i+3`` inside X.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16


def _splat(builder, value, vector_type):
    """A vector with every lane set to ``value``."""
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vector_type.count), [0] * vector_type.count))


def _address(context, builder, ty, val):
    """An array's data address as an integer (llvmlite's typed and opaque pointers mix
    only through integers)."""
    data = context.make_array(ty)(context, builder, val).data
    return builder.ptrtoint(data, ir.IntType(64))


def _matrix(context, builder, ty, val):
    """A 2-D array's (rows, columns, data address), as i64 values."""
    a = context.make_array(ty)(context, builder, val)
    rows, cols = cgutils.unpack_tuple(builder, a.shape, 2)
    return rows, cols, builder.ptrtoint(a.data, ir.IntType(64))


def _suffix(vf):
    """LLVM's name for a float vector type in intrinsic names: v16f32, v8f64."""
    return f"v{vf.count}{'f64' if isinstance(vf.element, ir.DoubleType) else 'f32'}"


def _fma(builder, vf):
    """LLVM's fused multiply-add on vectors of type ``vf``."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vf, [vf, vf, vf]),
                                          f"llvm.fma.{_suffix(vf)}")


def _vec_ptr(builder, address, byte_offset):
    """``address + byte_offset`` (i64 values) as a pointer."""
    return builder.inttoptr(builder.add(address, byte_offset), ir.PointerType())


def _f32_arrays(*tys):
    """All contiguous float32 arrays (the kernels read from the data pointer on)."""
    return all(isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C"
               for t in tys)


def _codes_type(codes):
    return (isinstance(codes, types.Array) and codes.layout == "C"
            and codes.dtype in (types.uint8, types.uint16))


def _gather_vector(builder, table_address, codes_address, code_bits):
    """The LANES float32 at table_address + 4 * code, for the LANES codes (unsigned,
    code_bits wide) from codes_address on (both addresses i64 values)."""
    f32, i64, i32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
    vf, vi64 = ir.VectorType(f32, LANES), ir.VectorType(i64, LANES)
    vptr = ir.VectorType(ir.PointerType(), LANES)
    c = builder.load(builder.inttoptr(codes_address, ir.PointerType()),
                     typ=ir.VectorType(ir.IntType(code_bits), LANES), align=code_bits // 8)
    offsets = builder.shl(builder.zext(c, vi64), ir.Constant(vi64, [2] * LANES))
    ptrs = builder.inttoptr(builder.add(_splat(builder, table_address, vi64), offsets), vptr)
    mask = ir.Constant(ir.VectorType(ir.IntType(1), LANES), [1] * LANES)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vf, [vptr, i32, mask.type, vf]),
        f"llvm.masked.gather.v{LANES}f32.v{LANES}p0")
    return builder.call(fn, [ptrs, ir.Constant(i32, 4), mask, ir.Constant(vf, ir.Undefined)])


@intrinsic
def gather_set(typingctx, dst, table, codes):
    """dst[l] = table[codes[l]] for l < LANES; dst, table float32, codes uint8/uint16 (at
    least LANES from their start)."""
    if not (_f32_arrays(dst, table) and _codes_type(codes)):
        return None

    def codegen(context, builder, sig, args):
        dst_a, tab_a, cod_a = (_address(context, builder, t, v) for t, v in zip(sig.args, args))
        got = _gather_vector(builder, tab_a, cod_a, sig.args[2].dtype.bitwidth)
        builder.store(got, builder.inttoptr(dst_a, ir.PointerType()), align=4)
        return context.get_dummy_value()

    return types.void(dst, table, codes), codegen


def _isa(context):
    """The widest vector extension the code being generated may use: "avx512", "avx2" or
    "" (read from the target machine's features, so a cached kernel matches its CPU)."""
    features = getattr(context.codegen(), "_tm_features", "")
    return "avx512" if "+avx512f" in features else "avx2" if "+avx2" in features else ""


def _permute_avx2(builder, tab_a, codes32):
    """permute_set with 8-float registers: the table's two halves in two registers; each
    eight codes pick from both (``vpermps`` reads a code's low three bits) and keep the
    upper half's pick where the code is 8 or more."""
    f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
    v8f, v8i = ir.VectorType(f32, 8), ir.VectorType(i32, 8)
    lo, hi = (builder.load(builder.inttoptr(builder.add(tab_a, ir.Constant(i64, 32 * h)),
                                            ir.PointerType()), typ=v8f, align=4)
              for h in (0, 1))
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v8f, [v8f, v8i]),
                                        "llvm.x86.avx2.permps")
    undef = ir.Constant(codes32.type, ir.Undefined)
    picks = []
    for h in range(LANES // 8):
        c = builder.shuffle_vector(codes32, undef, ir.Constant(v8i, list(range(8 * h, 8 * h + 8))))
        upper = builder.icmp_unsigned(">", c, ir.Constant(v8i, [7] * 8))
        picks.append(builder.select(upper, builder.call(fn, [hi, c]), builder.call(fn, [lo, c])))
    return builder.shuffle_vector(picks[0], picks[1],
                                  ir.Constant(ir.VectorType(i32, LANES), list(range(LANES))))


def _pick(builder, tab_a, cod_a, bits, isa, register):
    """table[codes[l]] for the LANES codes (``bits`` wide) at cod_a, as one vector: from a
    table of LANES floats held in registers when ``register`` and the CPU has AVX2 or
    AVX-512, else by the gather."""
    if not (register and isa):
        return _gather_vector(builder, tab_a, cod_a, bits)
    vf, vi32 = ir.VectorType(ir.FloatType(), LANES), ir.VectorType(ir.IntType(32), LANES)
    c = builder.zext(builder.load(builder.inttoptr(cod_a, ir.PointerType()),
                                  typ=ir.VectorType(ir.IntType(bits), LANES), align=bits // 8), vi32)
    if isa == "avx2":
        return _permute_avx2(builder, tab_a, c)
    t = builder.load(builder.inttoptr(tab_a, ir.PointerType()), typ=vf, align=4)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vf, [vf, vi32]), "llvm.x86.avx512.permvar.sf.512")
    return builder.call(fn, [t, c])


@intrinsic
def permute_set(typingctx, dst, table, codes):
    """dst[l] = table[codes[l]] for l < LANES, every code below LANES: the table's first
    LANES floats in one register, picked by one ``vpermps`` where the CPU has AVX-512, by
    two per half with AVX2, by the same gather as gather_set elsewhere; dst, table float32
    (table at least LANES long), codes uint8/uint16."""
    if not (_f32_arrays(dst, table) and _codes_type(codes)):
        return None

    def codegen(context, builder, sig, args):
        dst_a, tab_a, cod_a = (_address(context, builder, t, v) for t, v in zip(sig.args, args))
        got = _pick(builder, tab_a, cod_a, sig.args[2].dtype.bitwidth, _isa(context), True)
        builder.store(got, builder.inttoptr(dst_a, ir.PointerType()), align=4)
        return context.get_dummy_value()

    return types.void(dst, table, codes), codegen


def _byte_planes(builder, tab_a, entries):
    """A table of 16 or 32 floats as <32 x i8> vectors, four per 16 entries: vector k of
    the h-th sixteen holds byte k of entries 16h .. 16h+15, in both 128-bit halves, for
    ``vpshufb`` to pick by 16 codes per half."""
    i8, i32 = ir.IntType(8), ir.IntType(32)
    t = builder.load(builder.inttoptr(tab_a, ir.PointerType()),
                     typ=ir.VectorType(i8, 4 * entries), align=4)
    return [builder.shuffle_vector(t, t, ir.Constant(ir.VectorType(i32, 32),
                                                     [4 * (16 * h + e) + k for e in range(16)] * 2))
            for h in range(entries // 16) for k in range(4)]


def _interleave(builder, a, b, width, high):
    """x86's unpack (low or high) of elements ``width`` bits wide, per 128-bit half, of two
    256-bit integer vectors: a0 b0 a1 b1 ... of each half's low (or high) half."""
    i32 = ir.IntType(32)
    per = 128 // width  # elements per 128-bit half
    idx = [half * per + i + (per // 2 if high else 0) + side * 2 * per
           for half in range(2) for i in range(per // 2) for side in range(2)]
    vt = ir.VectorType(ir.IntType(width), 2 * per)
    a, b = builder.bitcast(a, vt), builder.bitcast(b, vt)
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, 2 * per), idx))


def _codes32(builder, cod_a):
    """The 32 uint8 codes at cod_a as a <32 x i8> vector."""
    return builder.load(builder.inttoptr(cod_a, ir.PointerType()),
                        typ=ir.VectorType(ir.IntType(8), 32), align=1)


def _plane_floats(builder, planes, c):
    """32 uint8 codes (``c``, <32 x i8>) decoded from the byte planes (``vpshufb`` per plane, for
    32 entries each code's pick from the upper planes kept where it is 16 or more, then
    bytes and words interleaved): four <8 x float>, the q-th holding codes 4q .. 4q+3 and
    16+4q .. 16+4q+3 (the order x86's unpacks leave them in)."""
    f32, i8 = ir.FloatType(), ir.IntType(8)
    v32b = ir.VectorType(i8, 32)
    pshufb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v32b, [v32b, v32b]),
                                            "llvm.x86.avx2.pshuf.b")
    b = [builder.call(pshufb, [p, c]) for p in planes[:4]]  # from entries 0-15
    if len(planes) == 8:  # codes 16-31 take entries 16-31's planes (vpshufb reads 4 bits)
        upper = builder.icmp_unsigned(">", c, ir.Constant(v32b, [15] * 32))
        b = [builder.select(upper, builder.call(pshufb, [p, c]), lo)
             for p, lo in zip(planes[4:], b)]
    words = [_interleave(builder, b[k], b[k + 1], 8, high) for high in (False, True)
             for k in (0, 2)]  # bytes 0-1 and 2-3 of codes 0-7, then of codes 8-15
    return [builder.bitcast(_interleave(builder, words[2 * j], words[2 * j + 1], 16, high),
                            ir.VectorType(f32, 8))
            for j in range(2) for high in (False, True)]


def _store_plane_floats(builder, f, out):
    """_plane_floats' four <8 x float> stored at address ``out`` (an i64 value) as the 32
    floats of their codes in order (each pair's 128-bit halves put back in order)."""
    i32 = ir.IntType(32)
    for k, (a, b, high) in enumerate(((0, 1, 0), (2, 3, 0), (0, 1, 1), (2, 3, 1))):
        idx = [4 * high + i for i in range(4)] + [8 + 4 * high + i for i in range(4)]
        v = builder.shuffle_vector(f[a], f[b], ir.Constant(ir.VectorType(i32, 8), idx))
        builder.store(v, _vec_ptr(builder, out, ir.Constant(ir.IntType(64), 32 * k)), align=4)


def _plane_set(entries):
    @intrinsic
    def plane_set(typingctx, dst, table, codes, n):
        if not (_f32_arrays(dst, table) and _codes_type(codes) and isinstance(n, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            i64 = ir.IntType(64)
            dst_a, tab_a, cod_a = (_address(context, builder, t, v)
                                   for t, v in zip(sig.args[:3], args[:3]))
            n = context.cast(builder, args[3], sig.args[3], types.int64)
            bits, isa = sig.args[2].dtype.bitwidth, _isa(context)
            planes = _byte_planes(builder, tab_a, entries) if isa == "avx2" and bits == 8 else None
            with cgutils.for_range(builder, n) as p:  # codes 32p .. 32p+31
                out = builder.add(dst_a, builder.mul(p.index, ir.Constant(i64, 8 * LANES)))
                cod = builder.add(cod_a, builder.mul(p.index, ir.Constant(i64, 2 * LANES * bits // 8)))
                if planes is not None:
                    _store_plane_floats(builder, _plane_floats(builder, planes,
                                                               _codes32(builder, cod)), out)
                else:
                    for h in range(2):
                        got = _pick(builder, tab_a, builder.add(
                            cod, ir.Constant(i64, LANES * bits // 8 * h)), bits, isa,
                            entries == LANES)
                        builder.store(got, _vec_ptr(builder, out, ir.Constant(i64, 4 * LANES * h)),
                                      align=4)
            return context.get_dummy_value()

        return types.void(dst, table, codes, n), codegen
    return plane_set


# permute_set2(dst, table, codes, n) / permute_set32: dst[l] = table[codes[l]] for l < n
# * 2 * LANES, every code below the table's size, LANES or 2 * LANES floats: with AVX2 and
# uint8 codes from its byte planes, built once (as the permute_dots decode them, each
# pair's 128-bit halves then put back in order), elsewhere as two permute_set picks
# (LANES) or two gathers (2 * LANES) per pair.
permute_set2 = _plane_set(LANES)
permute_set32 = _plane_set(2 * LANES)


def _nibble_halves(builder, cod_a, g):
    """Group g of codes packed two to a byte (lut.NIBBLE_GROUP) from one 32-byte load:
    its codes 0-31 (the low four bits) and 32-63 (the high four), two <32 x i8>."""
    v32b = ir.VectorType(ir.IntType(8), 32)
    v = _codes32(builder, builder.add(cod_a, builder.mul(g, _i64(32))))
    return (builder.and_(v, ir.Constant(v32b, [15] * 32)),
            builder.lshr(v, ir.Constant(v32b, [4] * 32)))


def _nibble_args_ok(dst_or_x, table, codes, n):
    """Packed codes are uint8; uint16 arrays type too (their bytes read the same way), so
    that a kernel branching on whether rows are packed compiles for 16-bit codes, which
    are never packed."""
    return _f32_arrays(dst_or_x, table) and _codes_type(codes) and isinstance(n, types.Integer)


def _nibble_groups(builder, tab_a, cod_a, n, isa, planes_half, picked):
    """The loop over n groups of 64 codes packed two to a byte (lut.NIBBLE_GROUP), table
    LANES floats at tab_a: each 32-byte load gives a group's 64 codes by a mask and a
    shift (_nibble_halves).  With AVX2, ``planes_half(g, h, planes, c)`` for the group's
    two halves h of 32 codes (c, <32 x i8>; g an i64 value); else the codes go through a
    64-byte buffer and ``picked(g, k, w)`` gets their values LANES at a time (w, k < 4;
    permute_set's pick)."""
    planes = _byte_planes(builder, tab_a, LANES) if isa == "avx2" else None
    buf = None if planes else builder.ptrtoint(
        cgutils.alloca_once(builder, ir.ArrayType(ir.IntType(8), 64)), ir.IntType(64))
    with cgutils.for_range(builder, n) as g:
        for h, c in enumerate(_nibble_halves(builder, cod_a, g.index)):
            if planes:
                planes_half(g.index, h, planes, c)
            else:
                builder.store(c, _vec_ptr(builder, buf, _i64(32 * h)), align=1)
        for k in range(0 if planes else 4):
            picked(g.index, k, _pick(builder, tab_a, builder.add(buf, _i64(LANES * k)), 8,
                                     isa, True))


@intrinsic
def nibble_set(typingctx, dst, table, codes, n):
    """permute_set2 over n groups of 64 codes packed two to a byte: dst[l] = table[code l]
    for l < 64n, table LANES floats, decoded from the byte planes with AVX2, else LANES at
    a time (_nibble_groups)."""
    if not _nibble_args_ok(dst, table, codes, n):
        return None

    def codegen(context, builder, sig, args):
        dst_a, tab_a, cod_a = (_address(context, builder, t, v)
                               for t, v in zip(sig.args[:3], args[:3]))
        n = context.cast(builder, args[3], sig.args[3], types.int64)

        def out(g):
            return builder.add(dst_a, builder.mul(g, _i64(256)))

        def planes_half(g, h, planes, c):
            _store_plane_floats(builder, _plane_floats(builder, planes, c),
                                builder.add(out(g), _i64(128 * h)))

        def picked(g, k, w):
            builder.store(w, _vec_ptr(builder, out(g), _i64(4 * LANES * k)), align=4)

        _nibble_groups(builder, tab_a, cod_a, n, _isa(context), planes_half, picked)
        return context.get_dummy_value()

    return types.void(dst, table, codes, n), codegen


def _plane_products(builder, planes, c, x_a, acc):
    """32 uint8 codes (``c``, <32 x i8>) decoded by _plane_floats and multiplied into acc,
    four <8 x float> running sums, each with the inputs of its codes (loaded four at a
    time)."""
    f32, i64 = ir.FloatType(), ir.IntType(64)
    v4f, v8f = ir.VectorType(f32, 4), ir.VectorType(f32, 8)
    fma = _fma(builder, v8f)
    for q, w in enumerate(_plane_floats(builder, planes, c)):
        lo, hi = (builder.load(_vec_ptr(builder, x_a, ir.Constant(i64, 4 * (4 * q + 16 * h))),
                               typ=v4f, align=4) for h in (0, 1))
        xv = builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(ir.IntType(32), 8),
                                                        list(range(8))))
        builder.store(builder.call(fma, [w, xv, builder.load(acc[q])]), acc[q])


def _picked_dot(entries):
    """permute_dot (``entries`` 16 or 32: the table's size) or gather_dot (None)."""
    register = entries is not None

    @intrinsic
    def picked_dot(typingctx, table, codes, x, n):
        if not (_f32_arrays(table, x) and _codes_type(codes) and isinstance(n, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            f32, i64 = ir.FloatType(), ir.IntType(64)
            vf, v8f = ir.VectorType(f32, LANES), ir.VectorType(f32, 8)
            tab_a, cod_a, x_a = (_address(context, builder, t, v)
                                 for t, v in zip(sig.args[:3], args[:3]))
            n = context.cast(builder, args[3], sig.args[3], types.int64)
            bits, isa, fma = sig.args[1].dtype.bitwidth, _isa(context), _fma(builder, vf)
            acc = [cgutils.alloca_once_value(builder, ir.Constant(vf, [0.0] * LANES))
                   for _ in range(2)]
            acc8 = [cgutils.alloca_once_value(builder, ir.Constant(v8f, [0.0] * 8))
                    for _ in range(4)]

            def group(i, a):  # weights i*LANES .. +LANES-1, decoded, times x, into a
                w = _pick(builder, tab_a, builder.add(cod_a, builder.mul(
                    i, ir.Constant(i64, LANES * bits // 8))), bits, isa, entries == LANES)
                xv = builder.load(_vec_ptr(builder, x_a, builder.mul(i, ir.Constant(i64, 4 * LANES))),
                                  typ=vf, align=4)
                builder.store(builder.call(fma, [w, xv, builder.load(a)]), a)

            def pair(i):  # groups i and i + 1
                if register and isa == "avx2" and bits == 8:
                    planes = _byte_planes(builder, tab_a, entries)  # LLVM hoists it
                    _plane_products(builder, planes, _codes32(builder, builder.add(
                        cod_a, builder.mul(i, ir.Constant(i64, LANES)))),
                        builder.add(x_a, builder.mul(i, ir.Constant(i64, 4 * LANES))), acc8)
                else:
                    group(i, acc[0])
                    group(builder.add(i, ir.Constant(i64, 1)), acc[1])

            _in_pairs(builder, n, pair, lambda i: group(i, acc[0]))
            return _dot_total(builder, acc, acc8)

        return types.float32(table, codes, x, n), codegen
    return picked_dot


def _dot_total(builder, acc, acc8):
    """A dot product's float32 total from its running sums: two <LANES x float> (``acc``,
    the picks' paths) and four <8 x float> (``acc8``, the byte planes'; zeros on the other
    paths), each set added in a fixed order, then halved (_halving_sum)."""
    planes = builder.fadd(builder.fadd(builder.load(acc8[0]), builder.load(acc8[1])),
                          builder.fadd(builder.load(acc8[2]), builder.load(acc8[3])))
    return _halving_sum(builder, builder.fadd(builder.load(acc[0]), builder.load(acc[1])),
                        planes)


def _in_pairs(builder, n, pair, last):
    """Code for groups 0 .. n-1 (n an i64 value): ``pair(i)`` for i = 0, 2, 4, ..., then
    ``last(n - 1)`` when n is odd."""
    i64 = ir.IntType(64)
    two = ir.Constant(i64, 2)
    with cgutils.for_range(builder, builder.udiv(n, two)) as g:
        pair(builder.mul(g.index, two))
    with builder.if_then(builder.icmp_unsigned("!=", builder.urem(n, two), ir.Constant(i64, 0))):
        last(builder.sub(n, ir.Constant(i64, 1)))


def _halving_sum(builder, v, extra=None):
    """The LANES floats of v summed pairwise, l and l + 8, then l and l + 4, ... (``extra``,
    8 floats, added after the first halving): one float, in a fixed order."""
    i32 = ir.IntType(32)
    h = LANES // 2
    while h:
        half = ir.VectorType(i32, h)
        v = builder.fadd(builder.shuffle_vector(v, v, ir.Constant(half, list(range(h)))),
                         builder.shuffle_vector(v, v, ir.Constant(half, list(range(h, 2 * h)))))
        if h == 8 and extra is not None:
            v = builder.fadd(v, extra)
        h //= 2
    return builder.extract_element(v, ir.Constant(i32, 0))


@intrinsic
def dot(typingctx, a, x, n):
    """The sum over i < n*LANES of a[i] * x[i]: groups of LANES multiplied by fused
    multiply-adds into two running vectors (even groups, odd groups), added, then their
    lanes summed as permute_dot sums them.  a, x float32 (n * LANES from their start)."""
    if not (_f32_arrays(a, x) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        f32, i64 = ir.FloatType(), ir.IntType(64)
        vf = ir.VectorType(f32, LANES)
        a_a, x_a = (_address(context, builder, t, v) for t, v in zip(sig.args[:2], args[:2]))
        n = context.cast(builder, args[2], sig.args[2], types.int64)
        fma = _fma(builder, vf)
        acc = [cgutils.alloca_once_value(builder, ir.Constant(vf, [0.0] * LANES))
               for _ in range(2)]

        def group(i, acc):
            at = builder.mul(i, ir.Constant(i64, 4 * LANES))
            w, xv = (builder.load(_vec_ptr(builder, base, at), typ=vf, align=4)
                     for base in (a_a, x_a))
            builder.store(builder.call(fma, [w, xv, builder.load(acc)]), acc)

        _in_pairs(builder, n, lambda i: (group(i, acc[0]),
                                         group(builder.add(i, ir.Constant(i64, 1)), acc[1])),
                  lambda i: group(i, acc[0]))
        return _halving_sum(builder, builder.fadd(builder.load(acc[0]), builder.load(acc[1])))

    return types.float32(a, x, n), codegen


# permute_dot(table, codes, x, n) / permute_dot32 / gather_dot: the sum over i < n*LANES
# of table[codes[i]] * x[i], a row of scalar codes times an input with no dense row
# written: permute_dot for tables of LANES floats, permute_dot32 for 2 * LANES (codebooks
# of up to 16 or 32 entries, padded), gather_dot for larger ones.  Groups of LANES
# weights are decoded as permute_set (permute_dot) or gather_set (the others) decode them
# and multiplied by fused multiply-adds into one of two running vectors (even groups into
# the first, odd into the second, two chains in flight).  With AVX2 and 8-bit codes, the
# permute_dots decode pairs of groups from the table's byte planes instead
# (_plane_products: 12 in-lane shuffles per 32 codes from 16 entries, from 32 four more
# and four blends, where permute_set's vpermps, slow on AMD Zen 3, takes four per 16) into
# four 8-float running vectors, an odd last group as above.  At the end
# the running vectors are added and their lanes summed pairwise (l and l + 8, then l and
# l + 4, ...): a fixed order for a given CPU, the same wherever the call is made.  table,
# x float32; codes uint8/uint16; n * LANES elements of codes and x from their start.
permute_dot = _picked_dot(LANES)
permute_dot32 = _picked_dot(2 * LANES)
gather_dot = _picked_dot(None)


@intrinsic
def nibble_dot(typingctx, table, codes, x, n):
    """permute_dot over n groups of 64 codes packed two to a byte (lut.NIBBLE_GROUP): the
    sum over i < 64n of table[code i] * x[i], table LANES floats.  The codes are decoded
    (_nibble_groups) and multiplied as permute_dot does the same codes unpacked, into the
    same running sums in the same order."""
    if not _nibble_args_ok(x, table, codes, n):
        return None

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        vf, v8f = ir.VectorType(f32, LANES), _V8F
        tab_a, cod_a, x_a = (_address(context, builder, t, v)
                             for t, v in zip(sig.args[:3], args[:3]))
        n = context.cast(builder, args[3], sig.args[3], types.int64)
        fma = _fma(builder, vf)
        acc = [cgutils.alloca_once_value(builder, ir.Constant(vf, [0.0] * LANES))
               for _ in range(2)]
        acc8 = [cgutils.alloca_once_value(builder, ir.Constant(v8f, [0.0] * 8))
                for _ in range(4)]

        def xg(g):
            return builder.add(x_a, builder.mul(g, _i64(256)))

        def planes_half(g, h, planes, c):
            _plane_products(builder, planes, c, builder.add(xg(g), _i64(128 * h)), acc8)

        def picked(g, k, w):  # LANES codes at a time, alternate sums
            xv = builder.load(_vec_ptr(builder, xg(g), _i64(4 * LANES * k)), typ=vf, align=4)
            a = acc[k % 2]
            builder.store(builder.call(fma, [w, xv, builder.load(a)]), a)

        _nibble_groups(builder, tab_a, cod_a, n, _isa(context), planes_half, picked)
        return _dot_total(builder, acc, acc8)

    return types.float32(table, codes, x, n), codegen


def _row_sums8(builder, vecs):
    """Eight <8 x float> to one: lane k the sum of vecs[k]'s lanes, added pairwise in a
    fixed order (neighbouring lanes, then pairs of them, then halves)."""
    i32 = ir.IntType(32)
    while len(vecs) > 1:
        n = vecs[0].type.count
        even = ir.Constant(ir.VectorType(i32, n), [2 * i for i in range(n // 2)]
                           + [n + 2 * i for i in range(n // 2)])
        odd = ir.Constant(ir.VectorType(i32, n), [2 * i + 1 for i in range(n // 2)]
                          + [n + 2 * i + 1 for i in range(n // 2)])
        vecs = [builder.fadd(builder.shuffle_vector(a, b, even), builder.shuffle_vector(a, b, odd))
                for a, b in zip(vecs[0::2], vecs[1::2])]
    return vecs[0]


_V8F = ir.VectorType(ir.FloatType(), 8)


def _i64(v):
    """An i64 constant."""
    return ir.Constant(ir.IntType(64), v)


def _codeword(builder, book, code):
    """Codeword ``code`` (an i64 value) of the (K, 8) float32 codebook at address ``book``,
    as one <8 x float> load (32 bytes a codeword)."""
    return builder.load(_vec_ptr(builder, book, builder.shl(code, _i64(5))), typ=_V8F,
                        align=4)


def _codebook_steps(context, builder, books_ty, books, flag_ty, flag):
    """(data address, bytes from one block's codebook to the next, bytes from one stage's
    to the next) of (n_books, K, 8) float32 codebooks, i64 values: one codebook per block
    when ``flag`` is set (stage step 0), else one per stage (block step 0)."""
    i64 = ir.IntType(64)
    bk = context.make_array(books_ty)(context, builder, books)
    _, K, _ = cgutils.unpack_tuple(builder, bk.shape, 3)
    book_bytes = builder.mul(K, ir.Constant(i64, 32))
    per_block = builder.icmp_unsigned("!=", context.cast(builder, flag, flag_ty, types.int64),
                                      ir.Constant(i64, 0))
    zero = ir.Constant(i64, 0)
    return (builder.ptrtoint(bk.data, i64), builder.select(per_block, book_bytes, zero),
            builder.select(per_block, zero, book_bytes))


def _codeword_dot(stages):
    """codeword_dot for ``stages`` codes per block (a constant, so that the stages are
    unrolled: with a loop over them at run time the running vectors spilled)."""

    @intrinsic
    def codeword_dot(typingctx, out, books, codes, x, r, h, per_block):
        if not (_f32_arrays(out, books, x) and books.ndim == 3 and _codes_type(codes)
                and codes.ndim == 4 and all(isinstance(t, (types.Integer, types.Boolean))
                                            for t in (r, h, per_block))):
            return None

        def codegen(context, builder, sig, args):
            i64, v8f, const = ir.IntType(64), _V8F, _i64

            out_a = _address(context, builder, sig.args[0], args[0])
            books_a, j_step, s_step = _codebook_steps(context, builder, sig.args[1], args[1],
                                                      sig.args[6], args[6])
            cs = context.make_array(sig.args[2])(context, builder, args[2])
            n_chunks, nr, CH, _ = cgutils.unpack_tuple(builder, cs.shape, 4)
            cod_a = builder.ptrtoint(cs.data, i64)
            xs = context.make_array(sig.args[3])(context, builder, args[3])
            x_a = builder.ptrtoint(xs.data, i64)
            r, h = (context.cast(builder, args[i], sig.args[i], types.int64) for i in (4, 5))
            bits = sig.args[2].dtype.bitwidth
            cb = bits // 8
            fma = _fma(builder, v8f)
            acc = [cgutils.alloca_once_value(builder, ir.Constant(v8f, [0.0] * 8))
                   for _ in range(8)]
            blocks = builder.udiv(cgutils.unpack_tuple(builder, xs.shape, 1)[0], const(8))
            per_chunk = builder.udiv(CH, const(stages))  # blocks per chunk
            with cgutils.for_range(builder, n_chunks) as chunk:
                j0 = builder.mul(chunk.index, per_chunk)
                nb = builder.sub(blocks, j0)
                nb = builder.select(builder.icmp_unsigned("<", nb, per_chunk), nb, per_chunk)
                row_codes = builder.add(  # codes[chunk, r, 0, 8 * h] (element index)
                    builder.mul(builder.add(builder.mul(chunk.index, nr), r),
                                builder.mul(CH, const(LANES))), builder.mul(h, const(8)))
                first = builder.add(cod_a, builder.mul(row_codes, const(cb)))
                with cgutils.for_range(builder, nb) as jl:
                    j = builder.add(j0, jl.index)
                    xv = builder.load(_vec_ptr(builder, x_a, builder.mul(j, const(32))),
                                      typ=v8f, align=4)
                    at = builder.add(first, builder.mul(jl.index, const(stages * LANES * cb)))
                    book = [builder.add(builder.add(books_a, builder.mul(j, j_step)),
                                        builder.mul(const(s), s_step)) for s in range(stages)]
                    # each stage's eight codes as 64-bit words, taken apart by shifts
                    words = [builder.load(builder.inttoptr(builder.add(
                        at, const(s * LANES * cb + 8 * q)), ir.PointerType()), typ=i64, align=1)
                        for s in range(stages) for q in range(cb)]
                    for k in range(8):
                        a = builder.load(acc[k])
                        for s in range(stages):  # each stage's codeword times x, in order
                            word = words[s * cb + k * bits // 64]
                            code = builder.and_(builder.lshr(word, const(k * bits % 64)),
                                                const((1 << bits) - 1))
                            a = builder.call(fma, [_codeword(builder, book[s], code), xv, a])
                        builder.store(a, acc[k])
            o = builder.inttoptr(out_a, ir.PointerType())
            total = _row_sums8(builder, [builder.load(a) for a in acc])
            builder.store(builder.fadd(builder.load(o, typ=v8f, align=4), total), o, align=4)
            return context.get_dummy_value()

        return types.void(out, books, codes, x, r, h, per_block), codegen

    return codeword_dot


# codeword_dot1 .. codeword_dot4(out, books, codes, x, r, h, per_block): out[k] += the dot
# product of x with row 8h + k of row block r of PQ/RQ codes with 1 .. 4 stages, k < 8, no
# table built: per block of 8 inputs, each row's codewords (one per stage) loaded as
# 8-float vectors and multiplied into the row's running vector by fused multiply-adds,
# in block and stage order (adding the stages' codewords first, then one multiply-add,
# was slower on two stages: one more operation per row and block); then each
# running vector's lanes summed pairwise (simd._row_sums8).  The codes' 8 rows at a
# position are read as 64-bit words and taken apart by shifts (a byte load per code was
# slower).  books : (n_books, K, 8) float32, the codebooks (one per stage, or one per
# block when ``per_block``; 64-byte aligned for speed: a codeword then never straddles a
# cache line); codes : (n_chunks, n_row_blocks, CH, LANES) uint8/uint16 as
# nn.layers.chunk_codes lays them out; x : float32, the input padded with zeros to whole
# blocks (its length sets the blocks summed).  One 8-lane multiply-add per row, block and
# stage where the tables' sums take one scalar add, and no tables (K * stages * 8
# multiply-adds per block): it wins where a layer has few rows per table entry
# (nn.layers.CODEWORD_ROWS_PER_ENTRY).
codeword_dot1, codeword_dot2, codeword_dot3, codeword_dot4 = (_codeword_dot(m) for m in range(1, 5))


def _decode_blocks_row(stages):
    """decode_row for ``stages`` codes per block (unrolled, as in codeword_dot)."""

    @intrinsic
    def decode_row(typingctx, out, books, codes, off, n, per_block):
        if not (_f32_arrays(out, books) and books.ndim == 3 and _codes_type(codes)
                and isinstance(off, types.Array) and off.dtype == types.uint64
                and off.layout == "C" and isinstance(n, types.Integer)
                and isinstance(per_block, (types.Integer, types.Boolean))):
            return None

        def codegen(context, builder, sig, args):
            i64, const = ir.IntType(64), _i64

            out_a, cod_a, off_a = (_address(context, builder, sig.args[i], args[i])
                                   for i in (0, 2, 3))
            books_a, j_step, s_step = _codebook_steps(context, builder, sig.args[1], args[1],
                                                      sig.args[5], args[5])
            n = context.cast(builder, args[4], sig.args[4], types.int64)
            bits = sig.args[2].dtype.bitwidth
            cb = bits // 8
            with cgutils.for_range(builder, n) as jl:
                j = jl.index
                k = builder.load(_vec_ptr(builder, off_a, builder.mul(j, const(8))), typ=i64,
                                 align=8)
                at = builder.add(cod_a, builder.mul(k, const(cb)))
                base = builder.add(books_a, builder.mul(j, j_step))
                w = None
                for s in range(stages):  # the stages' codewords added in order
                    code = builder.zext(builder.load(builder.inttoptr(builder.add(
                        at, const(s * LANES * cb)), ir.PointerType()), typ=ir.IntType(bits),
                        align=cb), i64)
                    cw = _codeword(builder, builder.add(base, builder.mul(const(s), s_step)), code)
                    w = cw if w is None else builder.fadd(w, cw)
                builder.store(w, _vec_ptr(builder, out_a, builder.mul(j, const(32))), align=4)
            return context.get_dummy_value()

        return types.void(out, books, codes, off, n, per_block), codegen

    return decode_row


# decode_row1 .. decode_row4(out, books, codes, off, n, per_block): out[8j .. 8j+7] = the
# sum over the stages s, in order, of codeword codes[off[j] + s * LANES] of books[j if
# per_block else s], for the blocks j < n: a row of PQ/RQ codes decoded, blocks of 8.
# codes : the row's codes from its first (uint8/uint16; its codes at block j's positions
# off[j] + s * LANES on); off : uint64 (lut._block_offsets); books : (n_books, K, 8)
# float32.  No bounds are checked.
decode_row1, decode_row2, decode_row3, decode_row4 = (_decode_blocks_row(m) for m in range(1, 5))


def _nearest(rows):
    @intrinsic
    def nearest(typingctx, ct, X, i, labels, dists):
        if not (isinstance(ct, types.Array) and ct.ndim == 2 and ct.layout == "C"
                and ct.dtype in (types.float32, types.float64)
                and isinstance(X, types.Array) and X.ndim == 2 and X.layout == "C"
                and X.dtype == ct.dtype and isinstance(i, types.Integer)
                and isinstance(labels, types.Array) and labels.dtype == types.int32
                and isinstance(dists, types.Array) and dists.dtype == types.float64
                and labels.layout == "C" and dists.layout == "C"):
            return None
        wide = ct.dtype == types.float64

        def codegen(context, builder, sig, args):
            ft = ir.DoubleType() if wide else ir.FloatType()
            i32, i64 = ir.IntType(32), ir.IntType(64)
            lanes = LANES // 2 if wide else LANES
            vf, vi = ir.VectorType(ft, lanes), ir.VectorType(i32, lanes)
            ct_a = context.make_array(sig.args[0])(context, builder, args[0])
            d, kp = cgutils.unpack_tuple(builder, ct_a.shape, 2)
            row0 = context.cast(builder, args[2], sig.args[2], types.int64)
            x_p = builder.gep(context.make_array(sig.args[1])(context, builder, args[1]).data,
                              [builder.mul(row0, d)], source_etype=ft)
            fma = _fma(builder, vf)
            # Per row: distances of the current group, and the lane-wise best so far.
            acc = [cgutils.alloca_once(builder, vf) for _ in range(rows)]
            best = [cgutils.alloca_once_value(builder, ir.Constant(vf, [float("inf")] * lanes))
                    for _ in range(rows)]
            arg = [cgutils.alloca_once_value(builder, ir.Constant(vi, [0] * lanes))
                   for _ in range(rows)]
            iota = ir.Constant(vi, list(range(lanes)))
            with cgutils.for_range(builder, builder.udiv(kp, ir.Constant(i64, lanes))) as g:
                for a in acc:
                    builder.store(ir.Constant(vf, [0.0] * lanes), a)
                col = builder.mul(g.index, ir.Constant(i64, lanes))
                with cgutils.for_range(builder, d) as j:
                    c_p = builder.gep(ct_a.data, [builder.add(builder.mul(j.index, kp), col)],
                                      source_etype=ft)
                    c = builder.load(c_p, typ=vf, align=ft.get_abi_size(context.target_data))
                    for r in range(rows):
                        xo = builder.add(builder.mul(ir.Constant(i64, r), d), j.index)
                        xj = builder.load(builder.gep(x_p, [xo], source_etype=ft), typ=ft)
                        diff = builder.fsub(c, _splat(builder, xj, vf))
                        builder.store(builder.call(fma, [diff, diff, builder.load(acc[r])]), acc[r])
                idx = builder.add(_splat(builder, builder.trunc(col, i32), vi), iota)
                for r in range(rows):
                    a, b = builder.load(acc[r]), builder.load(best[r])
                    less = builder.fcmp_ordered("<", a, b)
                    builder.store(builder.select(less, a, b), best[r])
                    builder.store(builder.select(less, idx, builder.load(arg[r])), arg[r])
            fmin = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ft, [vf]),
                                                  f"llvm.vector.reduce.fmin.{_suffix(vf)}")
            smin = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [vi]),
                                                  f"llvm.vector.reduce.smin.v{lanes}i32")
            lab_p = context.make_array(sig.args[3])(context, builder, args[3]).data
            dist_p = context.make_array(sig.args[4])(context, builder, args[4]).data
            for r in range(rows):
                b = builder.load(best[r])
                m = builder.call(fmin, [b])
                tied = builder.fcmp_ordered("==", b, _splat(builder, m, vf))
                first = builder.call(smin, [builder.select(tied, builder.load(arg[r]),
                                                           ir.Constant(vi, [2**31 - 1] * lanes))])
                out = builder.add(row0, ir.Constant(i64, r))
                builder.store(first, builder.gep(lab_p, [out], source_etype=i32))
                if not wide:
                    m = builder.fpext(m, ir.DoubleType())
                builder.store(m, builder.gep(dist_p, [out], source_etype=ir.DoubleType()))
            return context.get_dummy_value()

        return types.void(ct, X, i, labels, dists), codegen

    return nearest


nearest4 = _nearest(4)  # rows i .. i+3 of X
nearest1 = _nearest(1)  # row i


def _dot_table(groups, blocks):
    @intrinsic
    def dot_table(typingctx, ct, x, x0, x_step, w, tab, tab_step):
        if not (_f32_arrays(ct, x, tab) and ct.ndim == 2
                and all(isinstance(t, types.Integer) for t in (x0, x_step, w, tab_step))):
            return None

        def codegen(context, builder, sig, args):
            f32, i64 = ir.FloatType(), ir.IntType(64)
            vf = ir.VectorType(f32, LANES)
            _, kp, ct_p = _matrix(context, builder, sig.args[0], args[0])
            x_a = _address(context, builder, sig.args[1], args[1])
            tab_a = _address(context, builder, sig.args[5], args[5])
            x0, x_step, w, tab_step = (context.cast(builder, args[i], sig.args[i], types.int64)
                                       for i in (2, 3, 4, 6))
            fma = _fma(builder, vf)
            four = ir.Constant(i64, 4)

            def floats(address, index):  # a pointer to the float at address + 4 * index
                return _vec_ptr(builder, address, builder.mul(index, four))

            step = ir.Constant(i64, LANES * groups)
            with cgutils.for_range(builder, builder.udiv(kp, step)) as g:
                col = builder.mul(g.index, step)
                acc = [[cgutils.alloca_once_value(builder, ir.Constant(vf, [0.0] * LANES))
                        for _ in range(groups)] for _ in range(blocks)]
                with cgutils.for_range(builder, w) as t:
                    row = builder.add(builder.mul(t.index, kp), col)
                    c = [builder.load(floats(ct_p, builder.add(row, ir.Constant(i64, LANES * i))),
                                      typ=vf, align=4) for i in range(groups)]
                    for b in range(blocks):
                        at = builder.add(builder.add(x0, builder.mul(ir.Constant(i64, b), x_step)),
                                         t.index)
                        xt = _splat(builder, builder.load(floats(x_a, at), typ=f32), vf)
                        for i in range(groups):
                            builder.store(builder.call(fma, [xt, c[i], builder.load(acc[b][i])]),
                                          acc[b][i])
                for b in range(blocks):
                    base = builder.add(builder.mul(ir.Constant(i64, b), tab_step), col)
                    for i in range(groups):
                        builder.store(builder.load(acc[b][i]), floats(
                            tab_a, builder.add(base, ir.Constant(i64, LANES * i))), align=4)
            return context.get_dummy_value()

        return types.void(ct, x, x0, x_step, w, tab, tab_step), codegen

    return dot_table


# tab[b * tab_step + k] = sum over t < w, in order, of x[x0 + b * x_step + t] * ct[t, k]
# (fused multiply-adds), k < kp, for the blocks b: the partial dot products of input blocks
# with every codeword.  ct : (d, kp) float32, the codewords transposed; x : float32 row;
# tab : float32 from its start.  dot_table4 (kp a multiple of 4 * LANES) and dot_table1
# (of LANES) build one block's table, four vectors or one of LANES codewords at a time,
# their sums kept in registers over the block's dimensions (Numba's loop stored the
# running sums after every dimension, and one chain of fused multiply-adds at a time
# waits on each one's latency); x_step and tab_step are unused.  dot_table_x4 builds four
# blocks' tables from the same codebook, one vector of LANES codewords at a time, each
# load of the codewords shared by the four: dot_table4 loads a codeword vector for every
# multiply-add, and the loads, not the multiply-adds, set its pace.
dot_table4 = _dot_table(4, 1)
dot_table1 = _dot_table(1, 1)
dot_table_x4 = _dot_table(1, 4)


def _gather_types_ok(acc, table, codes, n, K):
    """The argument types gather_sum and gather_batch_sum take."""
    return (_f32_arrays(acc, table) and _codes_type(codes) and isinstance(n, types.Integer)
            and isinstance(K, types.Integer))


def _gather_args(context, builder, sig, args):
    """(acc, table, codes addresses, n, K) of a gather_sum-like call, as i64 values."""
    acc_a, tab_a, cod_a = (_address(context, builder, t, v)
                           for t, v in zip(sig.args[:3], args[:3]))
    n, K = (context.cast(builder, v, t, types.int64) for t, v in zip(sig.args[3:], args[3:]))
    return acc_a, tab_a, cod_a, n, K


@intrinsic
def gather_sum(typingctx, acc, table, codes, n, K):
    """acc[l] += table[i*K + codes[i, l]] for i = 0 .. n-1 in order, every l < LANES: the
    sum over n code positions of one block of LANES rows, its running sum in a register
    (with AVX-512, one vector register and one gather per position; elsewhere LANES
    scalar registers and LANES loads, the same adds in the same order).

    acc, table : float32 arrays (acc LANES long, table n*K); codes : uint8/uint16 with
    n*LANES elements from its start (C order, positions then lanes)."""
    if not _gather_types_ok(acc, table, codes, n, K):
        return None
    code_bits = codes.dtype.bitwidth

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        acc_a, tab_a, cod_a, n, K = _gather_args(context, builder, sig, args)
        row_bytes = builder.mul(K, ir.Constant(i64, 4))
        step = ir.Constant(i64, LANES * code_bits // 8)
        if _isa(context) == "avx512":
            _sum_by_gathers(builder, acc_a, tab_a, cod_a, n, row_bytes, step, code_bits)
        else:
            _sum_by_loads(builder, acc_a, tab_a, cod_a, n, row_bytes, step, code_bits)
        return context.get_dummy_value()

    return types.void(acc, table, codes, n, K), codegen


def _sum_by_gathers(builder, acc_a, tab_a, cod_a, n, row_bytes, step, code_bits):
    """gather_sum as one vector gather and one vector add per position."""
    vf = ir.VectorType(ir.FloatType(), LANES)
    acc_p = builder.inttoptr(acc_a, ir.PointerType())
    sum_p = cgutils.alloca_once(builder, vf)
    builder.store(builder.load(acc_p, typ=vf, align=4), sum_p)
    with cgutils.for_range(builder, n) as i:
        got = _gather_vector(builder, builder.add(tab_a, builder.mul(i.index, row_bytes)),
                             builder.add(cod_a, builder.mul(i.index, step)), code_bits)
        builder.store(builder.fadd(builder.load(sum_p), got), sum_p)
    builder.store(builder.load(sum_p), acc_p, align=4)


def _sum_by_loads(builder, acc_a, tab_a, cod_a, n, row_bytes, step, code_bits):
    """gather_sum as LANES scalar sums, one load and one add each per position, the codes
    read as 64-bit words and taken apart by shifts (little-endian, as every CPU Numba
    targets).  On AMD Zen 3 (AVX2) LLVM's generic gather became loads and inserts into a
    vector, and the gather instruction was no faster: for 1,152 positions of 16 rows from
    tables in L1, 8.4 us by two vgatherdps each, 5.8 us by scalar sums with one load per
    code, 4.7 us with the codes read as words (scratch A/Bs, one process each)."""
    i64, f32 = ir.IntType(64), ir.FloatType()
    per_word = 64 // code_bits
    mask = ir.Constant(i64, (1 << code_bits) - 1)

    def at(address, offset):
        return _vec_ptr(builder, address, ir.Constant(i64, offset))

    sums = []
    for lane in range(LANES):
        sums.append(cgutils.alloca_once(builder, f32))
        builder.store(builder.load(at(acc_a, 4 * lane), typ=f32), sums[-1])
    with cgutils.for_range(builder, n) as i:
        row = builder.add(tab_a, builder.mul(i.index, row_bytes))
        codes = builder.add(cod_a, builder.mul(i.index, step))
        words = [builder.load(at(codes, 8 * w), typ=i64, align=code_bits // 8)
                 for w in range(LANES // per_word)]
        for lane in range(LANES):
            shift = ir.Constant(i64, code_bits * (lane % per_word))
            c = builder.and_(builder.lshr(words[lane // per_word], shift), mask)
            offset = builder.shl(c, ir.Constant(i64, 2))
            got = builder.load(builder.inttoptr(builder.add(row, offset), ir.PointerType()),
                               typ=f32)
            builder.store(builder.fadd(builder.load(sums[lane]), got), sums[lane])
    for lane in range(LANES):
        builder.store(builder.load(sums[lane]), at(acc_a, 4 * lane))


# Inputs per table entry of the batch-major lookup: one 8-float vector (an AVX2 register),
# so that the tables of four positions (4 x 256 codewords x 32 bytes, lut.SUB) fit in a
# 32 KiB L1.
BATCH = 8


@intrinsic
def dot_table_batch(typingctx, book, xt, tab):
    """tab[k, :] = sum over t < d, in order, of book[k, t] * xt[t, :] (fused multiply-adds),
    for every codeword k: one input block's table for BATCH inputs at once, batch-major.

    book : (K, d) float32, the codewords; xt : float32, d * BATCH elements from its start,
    the block of the BATCH inputs transposed (dimension t of input b at t * BATCH + b); tab
    : float32, K * BATCH elements from its start.  Eight codewords at a time, their running
    sums in registers, each load of the inputs shared by the eight."""
    if not (_f32_arrays(book, xt, tab) and book.ndim == 2):
        return None

    def codegen(context, builder, sig, args):
        f32, i64 = ir.FloatType(), ir.IntType(64)
        vf = ir.VectorType(f32, BATCH)
        K, d, book_a = _matrix(context, builder, sig.args[0], args[0])
        xt_a = _address(context, builder, sig.args[1], args[1])
        tab_a = _address(context, builder, sig.args[2], args[2])
        fma = _fma(builder, vf)
        entry = ir.Constant(i64, 4 * BATCH)  # bytes of one table entry

        def codewords(k0, group):  # tab rows k0 .. k0+group-1
            acc = [cgutils.alloca_once_value(builder, ir.Constant(vf, [0.0] * BATCH))
                   for _ in range(group)]
            with cgutils.for_range(builder, d) as t:
                xv = builder.load(_vec_ptr(builder, xt_a, builder.mul(t.index, entry)), typ=vf,
                                  align=4)
                for i, a in enumerate(acc):
                    at = builder.mul(builder.add(builder.mul(builder.add(
                        k0, ir.Constant(i64, i)), d), t.index), ir.Constant(i64, 4))
                    c = _splat(builder, builder.load(_vec_ptr(builder, book_a, at), typ=f32), vf)
                    builder.store(builder.call(fma, [c, xv, builder.load(a)]), a)
            for i, a in enumerate(acc):
                out = builder.mul(builder.add(k0, ir.Constant(i64, i)), entry)
                builder.store(builder.load(a), _vec_ptr(builder, tab_a, out), align=4)

        group = ir.Constant(i64, 8)
        with cgutils.for_range(builder, builder.udiv(K, group)) as g:
            codewords(builder.mul(g.index, group), 8)
        with cgutils.for_range(builder, builder.urem(K, group)) as r:
            codewords(builder.add(builder.mul(builder.udiv(K, group), group), r.index), 1)
        return context.get_dummy_value()

    return types.void(book, xt, tab), codegen


@intrinsic
def gather_batch_sum(typingctx, acc, table, codes, n, K):
    """acc[l, :] += table[i, codes[i, l], :] for i = 0 .. n-1 in order, every row l < LANES
    of one block of rows: the batch-major twin of gather_sum, whose table entries hold
    BATCH inputs each, so that one vector load and one vector add serve them all.  Four
    rows at a time, their running sums in registers.

    acc : float32, LANES * BATCH elements from its start (row l's sums at l * BATCH);
    table : float32, (n, K, BATCH) from its start; codes : uint8/uint16 with n * LANES
    elements from its start (C order, positions then rows)."""
    if not _gather_types_ok(acc, table, codes, n, K):
        return None
    code_bits = codes.dtype.bitwidth

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        vf = ir.VectorType(ir.FloatType(), BATCH)
        acc_a, tab_a, cod_a, n, K = _gather_args(context, builder, sig, args)
        entry = ir.Constant(i64, 4 * BATCH)
        pos_bytes = builder.mul(K, entry)
        code_bytes = code_bits // 8
        for first in range(0, LANES, 4):
            rows = range(first, first + 4)
            sums = [cgutils.alloca_once_value(builder, builder.load(
                _vec_ptr(builder, acc_a, ir.Constant(i64, 4 * BATCH * r)), typ=vf, align=4))
                for r in rows]
            with cgutils.for_range(builder, n) as i:
                base = builder.add(tab_a, builder.mul(i.index, pos_bytes))
                at = builder.mul(i.index, ir.Constant(i64, LANES * code_bytes))
                for s, r in zip(sums, rows):
                    c = builder.load(_vec_ptr(builder, cod_a, builder.add(
                        at, ir.Constant(i64, r * code_bytes))), typ=ir.IntType(code_bits))
                    got = builder.load(_vec_ptr(builder, base, builder.mul(
                        builder.zext(c, i64), entry)), typ=vf, align=4)
                    builder.store(builder.fadd(builder.load(s), got), s)
            for s, r in zip(sums, rows):
                builder.store(builder.load(s), _vec_ptr(builder, acc_a,
                                                        ir.Constant(i64, 4 * BATCH * r)), align=4)
        return context.get_dummy_value()

    return types.void(acc, table, codes, n, K), codegen
