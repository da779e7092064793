"""Vector operations written as LLVM IR because Numba's vectorisers will not emit them.

``gather_add(acc, table, codes)`` does ``acc[l] += table[codes[l]]`` for the ``LANES``
lanes at once: a load of ``LANES`` codes, one ``llvm.masked.gather`` of table entries and
one vector add.  On x86 with AVX-512 that is a single ``vgatherdps`` of 16 floats; where
the CPU has no gather instruction LLVM lowers it to scalar loads, so the result is the same
everywhere (each lane is one float32 add, in the caller's order).

The lookup kernels in ``lut.py`` are built on it: on the development machine (AVX-512)
a scalar loop took 1.0-1.3 ns per code, this gather 0.45 ns.  No bounds are checked:
callers pass ``LANES`` codes, each below the table's length.

``copy8(dst, src)`` and ``add8(dst, src)`` move or add eight float32 as one vector: a
codeword of an 8-dimensional block into a decoded row.  Numba cannot tell the row apart
from the codebook, so its loop stores after every load and LLVM keeps them scalar; as one
vector, 256 decoded rows of 384 took 16 us instead of 58 (one stage) and 45 us instead of
90 (two stages).  No bounds are checked: both arrays hold eight elements from their start.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16


def _address(context, builder, ty, val):
    """An array's data address as an integer (llvmlite's typed and opaque pointers mix
    only through integers)."""
    data = context.make_array(ty)(context, builder, val).data
    return builder.ptrtoint(data, ir.IntType(64))


@intrinsic
def gather_add(typingctx, acc, table, codes):
    """acc[l] += table[codes[l]] for l < LANES; acc, table float32 arrays, codes uint8 or
    uint16 array (contiguous runs of at least LANES elements from their start)."""
    if not (isinstance(acc, types.Array) and acc.dtype == types.float32
            and isinstance(table, types.Array) and table.dtype == types.float32
            and isinstance(codes, types.Array) and codes.dtype in (types.uint8, types.uint16)):
        return None
    code_bits = codes.dtype.bitwidth

    def codegen(context, builder, sig, args):
        f32, i64, i32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
        ptr = ir.PointerType()
        vf = ir.VectorType(f32, LANES)
        vi64 = ir.VectorType(i64, LANES)
        acc_a, tab_a, cod_a = (_address(context, builder, t, v) for t, v in zip(sig.args, args))
        c = builder.load(builder.inttoptr(cod_a, ptr), typ=ir.VectorType(ir.IntType(code_bits), LANES),
                         align=code_bits // 8)
        offsets = builder.shl(builder.zext(c, vi64), ir.Constant(vi64, [2] * LANES))
        base = builder.insert_element(ir.Constant(vi64, ir.Undefined),
                                      tab_a, ir.Constant(i32, 0))
        base = builder.shuffle_vector(base, ir.Constant(vi64, ir.Undefined),
                                      ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
        vptr = ir.VectorType(ptr, LANES)
        ptrs = builder.inttoptr(builder.add(base, offsets), vptr)
        mask = ir.Constant(ir.VectorType(ir.IntType(1), LANES), [1] * LANES)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vf, [vptr, i32, mask.type, vf]),
            f"llvm.masked.gather.v{LANES}f32.v{LANES}p0")
        got = builder.call(fn, [ptrs, ir.Constant(i32, 4), mask, ir.Constant(vf, ir.Undefined)])
        acc_v = builder.inttoptr(acc_a, ptr)
        builder.store(builder.fadd(builder.load(acc_v, typ=vf, align=4), got), acc_v, align=4)
        return context.get_dummy_value()

    return types.void(acc, table, codes), codegen


def _vector8(add):
    @intrinsic
    def op(typingctx, dst, src):
        if not (isinstance(dst, types.Array) and dst.dtype == types.float32
                and isinstance(src, types.Array) and src.dtype == types.float32):
            return None

        def codegen(context, builder, sig, args):
            vf = ir.VectorType(ir.FloatType(), 8)
            d, s = (builder.inttoptr(_address(context, builder, t, v), ir.PointerType())
                    for t, v in zip(sig.args, args))
            v = builder.load(s, typ=vf, align=4)
            if add:
                v = builder.fadd(builder.load(d, typ=vf, align=4), v)
            builder.store(v, d, align=4)
            return context.get_dummy_value()

        return types.void(dst, src), codegen

    return op


copy8 = _vector8(add=False)  # dst[:8] = src[:8]; float32 arrays
add8 = _vector8(add=True)  # dst[:8] += src[:8]
