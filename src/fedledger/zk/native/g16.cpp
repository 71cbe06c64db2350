// g16.cpp: numeric kernels for a Groth16 (BN254) prover, exposed as a C ABI shared library (libfedg16.so).
//
// Every field element crossing the ABI is 4 little-endian uint64 limbs in STANDARD form (not Montgomery);
// the affine point at infinity is all-zero coordinates. Internally everything is Montgomery form
// (R = 2^256); multiplication is 4-limb CIOS (the "no-carry" variant, valid because both moduli are below
// 2^254), in inline assembly with mulx/adcx/adox where the CPU has BMI2 and ADX (build.py compiles with
// -march=native), else in portable unsigned __int128 arithmetic. All kernels are single-threaded and keep no global mutable state: a bases handle is
// read-only after creation and may be shared by concurrent calls from several threads.
// Inputs are trusted: points are not checked to be on the curve, scalars must be < r, and a range
// offset + n beyond the handle's length makes the MSM return infinity.
//
// ABI
//   void* g16_g1_bases(const uint64_t* xy, size_t n)     n affine G1 points, n*8 u64 (x, y)
//   void* g16_g2_bases(const uint64_t* xy, size_t n)     n affine G2 points, n*16 u64 (x.c0, x.c1, y.c0, y.c1)
//   void  g16_free_bases(void* h)
//   size_t g16_bases_len(const void* h)                   number of points held
//   void  g16_msm_g1(const void* h, const uint64_t* scalars, size_t offset, size_t n, uint64_t* out8)
//   void  g16_msm_g2(const void* h, const uint64_t* scalars, size_t offset, size_t n, uint64_t* out16)
//         out = sum_{i<n} scalars[i] * bases[offset+i] (scalars: n*4 u64, standard form, < r), affine
//         standard form. Zero scalars and infinity bases are skipped, scalar 1 is summed directly, a scalar
//         above (r-1)/2 is replaced by r-s on the negated point, and the rest run through one signed-digit
//         Pippenger in which window k only visits the points whose scalar has at least k*c bits (points
//         are sorted by bit length), so small scalars cost only the windows they need. The window width c
//         minimises a cost model over the bit-length histogram. Buckets accumulate in affine form with
//         Montgomery batch inversion; a point whose bucket already has a pending addition in the current
//         batch waits for the next batch in a small queue, or when that is full goes into a per-bucket XYZZ
//         overflow bucket (mixed addition), which also takes doublings. Narrow windows (few buckets) use
//         XYZZ buckets only.
//   void  g16_circom_h(const uint64_t* a, const uint64_t* b, size_t n, uint64_t* h)
//         arkworks' CircomReduction witness map; n a power of two <= 2^27 (else h is left untouched).
//         For X in {a, b, c = a.b}: inverse NTT, multiply coefficient j by g^j (g the primitive 2n-th root
//         of unity 5^((r-1)/2n)), forward NTT; h = a'.b' - c'. Inputs are not modified. The inverse NTT
//         is decimation-in-frequency and the forward one decimation-in-time, so no bit-reversal pass runs.
//   void  g16_libsnark_h(const uint64_t* a, const uint64_t* b, size_t n, uint64_t* h)
//         arkworks' LibsnarkReduction witness map (keys from groth16py's own setup); n a power of two in
//         [2, 2^27]. With c = a.b: evaluate a, b, c on the coset 5.D, h = (a'.b' - c') / (5^n - 1), returned
//         as the quotient polynomial's n coefficients in natural order. Inputs are not modified.
//   void  g16_sparse_matvec(const uint32_t* row_ptr, const uint32_t* cols, const uint64_t* coeffs,
//                           size_t rows, const uint64_t* w, uint64_t* out)
//         CSR matrix (row_ptr has rows+1 entries, cols/coeffs nnz entries, coeffs nnz*4 u64 standard form)
//         times the vector w (standard form) over Fr; out has rows*4 u64, standard form. No conversion of
//         coeffs or w is needed: montmul(c, w) of two standard-form values is c.w/R, so each row sums those
//         and one multiplication by R^2 (montmul -> c.w) finishes it.
//   int   g16_selftest(void)                               0 if internal constants check out

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

typedef uint64_t u64;
typedef unsigned __int128 u128;

namespace {

// ------------------------------------------------------------------------------------------------ fields

template <int I>
struct Fp {
    u64 v[4];
};

template <int I>
struct FpParams;

template <>
struct FpParams<0> {  // base field q
    static constexpr u64 P[4] = {0x3c208c16d87cfd47ULL, 0x97816a916871ca8dULL, 0xb85045b68181585dULL,
                                 0x30644e72e131a029ULL};
    static constexpr u64 INV = 0x87d20782e4866389ULL;  // -q^-1 mod 2^64
    static constexpr u64 R2[4] = {0xf32cfc5b538afa89ULL, 0xb5e71911d44501fbULL, 0x47ab1eff0a417ff6ULL,
                                  0x06d89f71cab8351fULL};
    static constexpr u64 ONE[4] = {0xd35d438dc58f0d9dULL, 0x0a78eb28f5c70b3dULL, 0x666ea36f7879462cULL,
                                   0x0e0a77c19a07df2fULL};
};

template <>
struct FpParams<1> {  // scalar field r
    static constexpr u64 P[4] = {0x43e1f593f0000001ULL, 0x2833e84879b97091ULL, 0xb85045b68181585dULL,
                                 0x30644e72e131a029ULL};
    static constexpr u64 INV = 0xc2e1f593efffffffULL;
    static constexpr u64 R2[4] = {0x1bb8e645ae216da7ULL, 0x53fe3ab1e35c59e3ULL, 0x8c49833d53bb8085ULL,
                                  0x0216d0b17f4e44a5ULL};
    static constexpr u64 ONE[4] = {0xac96341c4ffffffbULL, 0x36fc76959f60cd29ULL, 0x666ea36f7879462eULL,
                                   0x0e0a77c19a07df2fULL};
};

typedef Fp<0> Fq;
typedef Fp<1> Fr;

typedef unsigned long long ull;

template <int I>
static inline void reduce_once(u64 t[4]) {  // t < 2p -> t mod p, branch-free
    const u64* p = FpParams<I>::P;
    u64 s0, s1, s2, s3;
    unsigned char br = _subborrow_u64(0, t[0], p[0], (ull*)&s0);
    br = _subborrow_u64(br, t[1], p[1], (ull*)&s1);
    br = _subborrow_u64(br, t[2], p[2], (ull*)&s2);
    br = _subborrow_u64(br, t[3], p[3], (ull*)&s3);
    t[0] = br ? t[0] : s0;
    t[1] = br ? t[1] : s1;
    t[2] = br ? t[2] : s2;
    t[3] = br ? t[3] : s3;
}

template <int I>
static inline Fp<I> add(const Fp<I>& a, const Fp<I>& b) {
    Fp<I> r;
    unsigned char c = _addcarry_u64(0, a.v[0], b.v[0], (ull*)&r.v[0]);
    c = _addcarry_u64(c, a.v[1], b.v[1], (ull*)&r.v[1]);
    c = _addcarry_u64(c, a.v[2], b.v[2], (ull*)&r.v[2]);
    _addcarry_u64(c, a.v[3], b.v[3], (ull*)&r.v[3]);
    reduce_once<I>(r.v);
    return r;
}

template <int I>
static inline Fp<I> sub(const Fp<I>& a, const Fp<I>& b) {
    const u64* p = FpParams<I>::P;
    Fp<I> r;
    unsigned char br = _subborrow_u64(0, a.v[0], b.v[0], (ull*)&r.v[0]);
    br = _subborrow_u64(br, a.v[1], b.v[1], (ull*)&r.v[1]);
    br = _subborrow_u64(br, a.v[2], b.v[2], (ull*)&r.v[2]);
    br = _subborrow_u64(br, a.v[3], b.v[3], (ull*)&r.v[3]);
    const u64 mask = 0 - (u64)br;  // add p back if a < b
    unsigned char c = _addcarry_u64(0, r.v[0], p[0] & mask, (ull*)&r.v[0]);
    c = _addcarry_u64(c, r.v[1], p[1] & mask, (ull*)&r.v[1]);
    c = _addcarry_u64(c, r.v[2], p[2] & mask, (ull*)&r.v[2]);
    _addcarry_u64(c, r.v[3], p[3] & mask, (ull*)&r.v[3]);
    return r;
}

template <int I>
static inline bool is_zero(const Fp<I>& a) {
    return (a.v[0] | a.v[1] | a.v[2] | a.v[3]) == 0;
}

template <int I>
static inline bool eq(const Fp<I>& a, const Fp<I>& b) {
    return ((a.v[0] ^ b.v[0]) | (a.v[1] ^ b.v[1]) | (a.v[2] ^ b.v[2]) | (a.v[3] ^ b.v[3])) == 0;
}

template <int I>
static inline Fp<I> neg(const Fp<I>& a) {
    if (is_zero(a)) return a;
    Fp<I> z;
    for (int i = 0; i < 4; i++) z.v[i] = FpParams<I>::P[i];
    return sub(z, a);
}

template <int I>
static inline Fp<I> dbl(const Fp<I>& a) {
    return add(a, a);
}

#if defined(__BMI2__) && defined(__ADX__)
// Montgomery multiplication: CIOS without the extra carry word (top limb of the modulus < 2^62), in
// x86-64 assembly with mulx/adcx/adox (the build uses -march=native; the target needs BMI2 and ADX).
template <int I>
static inline Fp<I> mul(const Fp<I>& a, const Fp<I>& b) {
    // Row by row: t += a*b_i (mulx, carries on two chains with adcx/adox), then t = (t + m*p)/2^64 with
    // m = t_0 * (-p^-1) mod 2^64. The fifth word never overflows because p < 2^254.
    u64 t0, t1, t2, t3, t4, lo, hi, z;
    __asm__(
        "movq 0(%[b]), %%rdx\n\t"
        "mulxq 0(%[a]), %[t0], %[t1]\n\t"
        "mulxq 8(%[a]), %[lo], %[t2]\n\t"
        "addq %[lo], %[t1]\n\t"
        "mulxq 16(%[a]), %[lo], %[t3]\n\t"
        "adcq %[lo], %[t2]\n\t"
        "mulxq 24(%[a]), %[lo], %[t4]\n\t"
        "adcq %[lo], %[t3]\n\t"
        "adcq $0, %[t4]\n\t"
        "movq %[t0], %%rdx\n\t"
        "imulq %[inv], %%rdx\n\t"
        "xorl %k[z], %k[z]\n\t"
        "mulxq 0(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t0]\n\t"
        "adcxq %[hi], %[t1]\n\t"
        "mulxq 8(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t1]\n\t"
        "adcxq %[hi], %[t2]\n\t"
        "mulxq 16(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t2]\n\t"
        "adcxq %[hi], %[t3]\n\t"
        "mulxq 24(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t3]\n\t"
        "adcxq %[z], %[hi]\n\t"
        "adoxq %[t4], %[hi]\n\t"
        "movq %[hi], %[t0]\n\t"
        "movq 8(%[b]), %%rdx\n\t"
        "xorl %k[z], %k[z]\n\t"
        "mulxq 0(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t1]\n\t"
        "adcxq %[hi], %[t2]\n\t"
        "mulxq 8(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t2]\n\t"
        "adcxq %[hi], %[t3]\n\t"
        "mulxq 16(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t3]\n\t"
        "adcxq %[hi], %[t0]\n\t"
        "mulxq 24(%[a]), %[lo], %[t4]\n\t"
        "adoxq %[lo], %[t0]\n\t"
        "adcxq %[z], %[t4]\n\t"
        "adoxq %[z], %[t4]\n\t"
        "movq %[t1], %%rdx\n\t"
        "imulq %[inv], %%rdx\n\t"
        "xorl %k[z], %k[z]\n\t"
        "mulxq 0(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t1]\n\t"
        "adcxq %[hi], %[t2]\n\t"
        "mulxq 8(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t2]\n\t"
        "adcxq %[hi], %[t3]\n\t"
        "mulxq 16(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t3]\n\t"
        "adcxq %[hi], %[t0]\n\t"
        "mulxq 24(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t0]\n\t"
        "adcxq %[z], %[hi]\n\t"
        "adoxq %[t4], %[hi]\n\t"
        "movq %[hi], %[t1]\n\t"
        "movq 16(%[b]), %%rdx\n\t"
        "xorl %k[z], %k[z]\n\t"
        "mulxq 0(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t2]\n\t"
        "adcxq %[hi], %[t3]\n\t"
        "mulxq 8(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t3]\n\t"
        "adcxq %[hi], %[t0]\n\t"
        "mulxq 16(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t0]\n\t"
        "adcxq %[hi], %[t1]\n\t"
        "mulxq 24(%[a]), %[lo], %[t4]\n\t"
        "adoxq %[lo], %[t1]\n\t"
        "adcxq %[z], %[t4]\n\t"
        "adoxq %[z], %[t4]\n\t"
        "movq %[t2], %%rdx\n\t"
        "imulq %[inv], %%rdx\n\t"
        "xorl %k[z], %k[z]\n\t"
        "mulxq 0(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t2]\n\t"
        "adcxq %[hi], %[t3]\n\t"
        "mulxq 8(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t3]\n\t"
        "adcxq %[hi], %[t0]\n\t"
        "mulxq 16(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t0]\n\t"
        "adcxq %[hi], %[t1]\n\t"
        "mulxq 24(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t1]\n\t"
        "adcxq %[z], %[hi]\n\t"
        "adoxq %[t4], %[hi]\n\t"
        "movq %[hi], %[t2]\n\t"
        "movq 24(%[b]), %%rdx\n\t"
        "xorl %k[z], %k[z]\n\t"
        "mulxq 0(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t3]\n\t"
        "adcxq %[hi], %[t0]\n\t"
        "mulxq 8(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t0]\n\t"
        "adcxq %[hi], %[t1]\n\t"
        "mulxq 16(%[a]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t1]\n\t"
        "adcxq %[hi], %[t2]\n\t"
        "mulxq 24(%[a]), %[lo], %[t4]\n\t"
        "adoxq %[lo], %[t2]\n\t"
        "adcxq %[z], %[t4]\n\t"
        "adoxq %[z], %[t4]\n\t"
        "movq %[t3], %%rdx\n\t"
        "imulq %[inv], %%rdx\n\t"
        "xorl %k[z], %k[z]\n\t"
        "mulxq 0(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t3]\n\t"
        "adcxq %[hi], %[t0]\n\t"
        "mulxq 8(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t0]\n\t"
        "adcxq %[hi], %[t1]\n\t"
        "mulxq 16(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t1]\n\t"
        "adcxq %[hi], %[t2]\n\t"
        "mulxq 24(%[p]), %[lo], %[hi]\n\t"
        "adoxq %[lo], %[t2]\n\t"
        "adcxq %[z], %[hi]\n\t"
        "adoxq %[t4], %[hi]\n\t"
        "movq %[hi], %[t3]\n\t"
        : [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3), [t4] "=&r"(t4), [lo] "=&r"(lo),
          [hi] "=&r"(hi), [z] "=&r"(z)
        : [a] "r"(a.v), [b] "r"(b.v), [p] "r"(FpParams<I>::P), [inv] "m"(FpParams<I>::INV),
          "m"(*(const u64(*)[4])a.v), "m"(*(const u64(*)[4])b.v)
        : "rdx", "cc");
    Fp<I> r;
    r.v[0] = t0;
    r.v[1] = t1;
    r.v[2] = t2;
    r.v[3] = t3;
    reduce_once<I>(r.v);
    return r;
}
#else
// Montgomery multiplication without BMI2/ADX (a CPU that -march=native finds without them): the same CIOS in
// portable unsigned __int128 arithmetic, about half as fast.
template <int I>
static inline Fp<I> mul(const Fp<I>& a, const Fp<I>& b) {
    const u64* p = FpParams<I>::P;
    const u64 inv = FpParams<I>::INV;
    u64 t[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        u128 s = (u128)a.v[0] * b.v[i] + t[0];
        u64 carry_a = (u64)(s >> 64);
        const u64 m = (u64)s * inv;
        u128 r = (u128)m * p[0] + (u64)s;
        u64 carry_m = (u64)(r >> 64);
        for (int j = 1; j < 4; j++) {
            s = (u128)a.v[j] * b.v[i] + t[j] + carry_a;
            carry_a = (u64)(s >> 64);
            r = (u128)m * p[j] + (u64)s + carry_m;
            carry_m = (u64)(r >> 64);
            t[j - 1] = (u64)r;
        }
        t[3] = carry_a + carry_m;
    }
    Fp<I> out;
    for (int j = 0; j < 4; j++) out.v[j] = t[j];
    reduce_once<I>(out.v);
    return out;
}
#endif

template <int I>
static inline Fp<I> sqr(const Fp<I>& a) {
    return mul(a, a);
}

template <int I>
static inline Fp<I> fp_one() {
    Fp<I> r;
    for (int i = 0; i < 4; i++) r.v[i] = FpParams<I>::ONE[i];
    return r;
}

template <int I>
static inline Fp<I> to_mont(const u64* s) {
    Fp<I> a, r2;
    for (int i = 0; i < 4; i++) {
        a.v[i] = s[i];
        r2.v[i] = FpParams<I>::R2[i];
    }
    return mul(a, r2);
}

template <int I>
static inline void from_mont(const Fp<I>& a, u64* out) {
    Fp<I> one = {{1, 0, 0, 0}};
    Fp<I> r = mul(a, one);
    for (int i = 0; i < 4; i++) out[i] = r.v[i];
}

template <int I>
static Fp<I> pow_limbs(const Fp<I>& a, const u64 e[4]) {
    Fp<I> r = fp_one<I>();
    for (int i = 255; i >= 0; i--) {
        r = sqr(r);
        if ((e[i / 64] >> (i % 64)) & 1) r = mul(r, a);
    }
    return r;
}

template <int I>
static Fp<I> inv(const Fp<I>& a) {  // a != 0; Fermat
    u64 e[4];
    u64 br = 2;
    for (int i = 0; i < 4; i++) {
        u128 d = (u128)FpParams<I>::P[i] - br;
        e[i] = (u64)d;
        br = (u64)(d >> 64) & 1;
    }
    return pow_limbs(a, e);
}

// Fq2 = Fq[u]/(u^2 + 1)
struct Fq2 {
    Fq c0, c1;
};

static inline Fq2 add(const Fq2& a, const Fq2& b) { return {add(a.c0, b.c0), add(a.c1, b.c1)}; }
static inline Fq2 sub(const Fq2& a, const Fq2& b) { return {sub(a.c0, b.c0), sub(a.c1, b.c1)}; }
static inline Fq2 neg(const Fq2& a) { return {neg(a.c0), neg(a.c1)}; }
static inline Fq2 dbl(const Fq2& a) { return {dbl(a.c0), dbl(a.c1)}; }
static inline bool is_zero(const Fq2& a) { return is_zero(a.c0) && is_zero(a.c1); }
static inline bool eq(const Fq2& a, const Fq2& b) { return eq(a.c0, b.c0) && eq(a.c1, b.c1); }
static inline Fq2 mul(const Fq2& a, const Fq2& b) {
    Fq t0 = mul(a.c0, b.c0);
    Fq t1 = mul(a.c1, b.c1);
    Fq t2 = mul(add(a.c0, a.c1), add(b.c0, b.c1));
    return {sub(t0, t1), sub(sub(t2, t0), t1)};
}
static inline Fq2 sqr(const Fq2& a) {
    Fq t = mul(a.c0, a.c1);
    return {mul(add(a.c0, a.c1), sub(a.c0, a.c1)), dbl(t)};
}
static inline Fq2 inv(const Fq2& a) {
    Fq n = add(sqr(a.c0), sqr(a.c1));
    Fq ni = inv(n);
    return {mul(a.c0, ni), neg(mul(a.c1, ni))};
}

template <class F>
struct FieldOne;
template <>
struct FieldOne<Fq> {
    static Fq get() { return fp_one<0>(); }
};
template <>
struct FieldOne<Fq2> {
    static Fq2 get() {
        Fq2 r;
        r.c0 = fp_one<0>();
        std::memset(&r.c1, 0, sizeof(Fq));
        return r;
    }
};

// ------------------------------------------------------------------------------------------------ curves

template <class F>
struct Aff {  // infinity: x = y = 0 (never on the curve since b != 0)
    F x, y;
};

template <class F>
struct Xyzz {  // x = X/ZZ, y = Y/ZZZ, ZZ^3 = ZZZ^2; infinity: ZZ = 0
    F X, Y, ZZ, ZZZ;
};

template <class F>
static inline bool aff_is_inf(const Aff<F>& p) {
    return is_zero(p.x) && is_zero(p.y);
}

template <class F>
static inline void xyzz_set_inf(Xyzz<F>& p) {
    std::memset(&p, 0, sizeof(p));
}

template <class F>
static inline bool xyzz_is_inf(const Xyzz<F>& p) {
    return is_zero(p.ZZ);
}

template <class F>
static inline void xyzz_dbl(Xyzz<F>& p) {  // dbl-2008-s-1, a = 0
    if (xyzz_is_inf(p)) return;
    F U = dbl(p.Y);
    F V = sqr(U);
    F W = mul(U, V);
    F S = mul(p.X, V);
    F X2 = sqr(p.X);
    F M = add(dbl(X2), X2);
    F X3 = sub(sub(sqr(M), S), S);
    F Y3 = sub(mul(M, sub(S, X3)), mul(W, p.Y));
    p.X = X3;
    p.Y = Y3;
    p.ZZ = mul(V, p.ZZ);
    p.ZZZ = mul(W, p.ZZZ);
}

template <class F>
static inline void xyzz_set_aff_dbl(Xyzz<F>& p, const Aff<F>& q) {  // p = 2q, mdbl-2008-s-1
    F U = dbl(q.y);
    F V = sqr(U);
    F W = mul(U, V);
    F S = mul(q.x, V);
    F X2 = sqr(q.x);
    F M = add(dbl(X2), X2);
    F X3 = sub(sub(sqr(M), S), S);
    p.Y = sub(mul(M, sub(S, X3)), mul(W, q.y));
    p.X = X3;
    p.ZZ = V;
    p.ZZZ = W;
}

// p += q, q affine and not infinity (madd-2008-s)
template <class F>
static inline void xyzz_madd(Xyzz<F>& p, const Aff<F>& q) {
    if (xyzz_is_inf(p)) {
        p.X = q.x;
        p.Y = q.y;
        p.ZZ = FieldOne<F>::get();
        p.ZZZ = p.ZZ;
        return;
    }
    F U2 = mul(q.x, p.ZZ);
    F S2 = mul(q.y, p.ZZZ);
    F P = sub(U2, p.X);
    F R = sub(S2, p.Y);
    if (is_zero(P)) {
        if (is_zero(R)) {
            xyzz_set_aff_dbl(p, q);
        } else {
            xyzz_set_inf(p);
        }
        return;
    }
    F PP = sqr(P);
    F PPP = mul(P, PP);
    F Q = mul(p.X, PP);
    F X3 = sub(sub(sub(sqr(R), PPP), Q), Q);
    p.Y = sub(mul(R, sub(Q, X3)), mul(p.Y, PPP));
    p.X = X3;
    p.ZZ = mul(p.ZZ, PP);
    p.ZZZ = mul(p.ZZZ, PPP);
}

// p -= q (q affine, not infinity)
template <class F>
static inline void xyzz_msub(Xyzz<F>& p, const Aff<F>& q) {
    Aff<F> n = {q.x, neg(q.y)};
    xyzz_madd(p, n);
}

// p += q (add-2008-s)
template <class F>
static inline void xyzz_add(Xyzz<F>& p, const Xyzz<F>& q) {
    if (xyzz_is_inf(q)) return;
    if (xyzz_is_inf(p)) {
        p = q;
        return;
    }
    F U1 = mul(p.X, q.ZZ);
    F U2 = mul(q.X, p.ZZ);
    F S1 = mul(p.Y, q.ZZZ);
    F S2 = mul(q.Y, p.ZZZ);
    F P = sub(U2, U1);
    F R = sub(S2, S1);
    if (is_zero(P)) {
        if (is_zero(R)) {
            xyzz_dbl(p);
        } else {
            xyzz_set_inf(p);
        }
        return;
    }
    F PP = sqr(P);
    F PPP = mul(P, PP);
    F Q = mul(U1, PP);
    F X3 = sub(sub(sub(sqr(R), PPP), Q), Q);
    p.Y = sub(mul(R, sub(Q, X3)), mul(S1, PPP));
    p.X = X3;
    p.ZZ = mul(mul(p.ZZ, q.ZZ), PP);
    p.ZZZ = mul(mul(p.ZZZ, q.ZZZ), PPP);
}

template <class F>
static inline Aff<F> xyzz_to_aff(const Xyzz<F>& p) {
    Aff<F> r;
    if (xyzz_is_inf(p)) {
        std::memset(&r, 0, sizeof(r));
        return r;
    }
    F zzzi = inv(p.ZZZ);           // 1/Z^3
    F zi = mul(zzzi, p.ZZ);        // 1/Z
    F zzi = sqr(zi);               // 1/Z^2
    r.x = mul(p.X, zzi);
    r.y = mul(p.Y, zzzi);
    return r;
}

// ------------------------------------------------------------------------------------------------ bases

struct BasesHeader {
    size_t n;
    int kind;  // 1 = G1, 2 = G2
};

template <class F>
struct Bases {
    BasesHeader h;
    Aff<F>* pts;
};

static inline Fq load_fq(const u64* s) { return to_mont<0>(s); }
static inline void store_fq(const Fq& a, u64* out) { from_mont<0>(a, out); }
static inline Fq2 load_fq2(const u64* s) { return {to_mont<0>(s), to_mont<0>(s + 4)}; }
static inline void store_fq2(const Fq2& a, u64* out) {
    from_mont<0>(a.c0, out);
    from_mont<0>(a.c1, out + 4);
}

static inline void load_elem(const u64* s, Fq& out) { out = load_fq(s); }
static inline void load_elem(const u64* s, Fq2& out) { out = load_fq2(s); }
static inline void store_elem(const Fq& a, u64* out) { store_fq(a, out); }
static inline void store_elem(const Fq2& a, u64* out) { store_fq2(a, out); }

template <class F>
static void* make_bases(const u64* xy, size_t n, int kind) {
    const size_t W = sizeof(F) / 8;  // limbs per coordinate
    Bases<F>* b = new (std::nothrow) Bases<F>;
    if (!b) return nullptr;
    b->h.n = n;
    b->h.kind = kind;
    b->pts = static_cast<Aff<F>*>(std::aligned_alloc(64, ((n * sizeof(Aff<F>)) / 64 + 1) * 64));
    if (!b->pts) {
        delete b;
        return nullptr;
    }
    for (size_t i = 0; i < n; i++) {
        load_elem(xy + i * 2 * W, b->pts[i].x);
        load_elem(xy + i * 2 * W + W, b->pts[i].y);
    }
    return b;
}

// ------------------------------------------------------------------------------------------------ MSM

static const u64 R_MOD[4] = {0x43e1f593f0000001ULL, 0x2833e84879b97091ULL, 0xb85045b68181585dULL,
                             0x30644e72e131a029ULL};
// (r-1)/2
static const u64 R_HALF[4] = {0xa1f0fac9f8000000ULL, 0x9419f4243cdcb848ULL, 0xdc2822db40c0ac2eULL,
                              0x183227397098d014ULL};

static inline bool gt(const u64* a, const u64* b) {
    for (int i = 3; i >= 0; i--) {
        if (a[i] != b[i]) return a[i] > b[i];
    }
    return false;
}

static inline int bitlen(const u64* s) {
    for (int i = 3; i >= 0; i--) {
        if (s[i]) return 64 * i + 64 - __builtin_clzll(s[i]);
    }
    return 0;
}

static inline u64 bits_at(const u64* s, int pos, int c) {
    int limb = pos >> 6, off = pos & 63;
    if (limb >= 4) return 0;
    u64 v = s[limb] >> off;
    if (off + c > 64 && limb + 1 < 4) v |= s[limb + 1] << (64 - off);
    return v & ((1ULL << c) - 1);
}

struct Scalar {
    u64 v[4];
};

template <class F>
struct BatchAdder {
    // Affine buckets, filled by batched affine additions. A point whose bucket already has an addition
    // pending in the current batch waits in a small queue for the next batch; when that queue is full
    // (many points for few buckets), it goes to the bucket's XYZZ overflow bucket instead.
    std::vector<Aff<F>> bucket;
    std::vector<Xyzz<F>> over;
    std::vector<uint8_t> full;      // bucket holds a point
    std::vector<uint8_t> has_over;  // overflow bucket non-empty
    std::vector<uint32_t> stamp;
    uint32_t cur = 1;
    // pending batch
    std::vector<uint32_t> pb;   // bucket index
    std::vector<Aff<F>> pp;     // point to add
    std::vector<F> acc;         // prefix products of dx
    size_t np = 0;
    size_t cap = 0;
    // points deferred to the next batch
    std::vector<uint32_t> qb, qb2;
    std::vector<Aff<F>> qp, qp2;
    size_t nq = 0;
    size_t qcap = 0;

    void init(size_t nb, size_t batch) {
        bucket.resize(nb);
        over.resize(nb);
        full.assign(nb, 0);
        has_over.assign(nb, 0);
        stamp.assign(nb, 0);
        cur = 1;
        cap = batch;
        pb.resize(batch);
        pp.resize(batch);
        acc.resize(batch);
        np = 0;
        qcap = batch / 4;
        qb.resize(qcap);
        qp.resize(qcap);
        qb2.resize(qcap);
        qp2.resize(qcap);
        nq = 0;
    }

    void reset() {
        std::fill(full.begin(), full.end(), 0);
        std::fill(has_over.begin(), has_over.end(), 0);
    }

    inline void to_over(uint32_t b, const Aff<F>& p) {
        if (!has_over[b]) {
            xyzz_set_inf(over[b]);
            has_over[b] = 1;
        }
        xyzz_madd(over[b], p);
    }

    inline void push(uint32_t b, const Aff<F>& p) {
        if (stamp[b] == cur) {
            if (nq < qcap) {
                qb[nq] = b;
                qp[nq] = p;
                nq++;
            } else {
                to_over(b, p);
            }
            return;
        }
        if (!full[b]) {
            bucket[b] = p;
            full[b] = 1;
            return;
        }
        if (eq(bucket[b].x, p.x)) {
            if (eq(bucket[b].y, p.y)) {
                to_over(b, p);  // doubling: leave it to the XYZZ formulas
            } else {
                full[b] = 0;  // P + (-P)
            }
            return;
        }
        stamp[b] = cur;
        pb[np] = b;
        pp[np] = p;
        np++;
        if (np == cap) flush();
    }

    // Run the pending batch, then start the next one with the deferred points. At most qcap < cap points
    // are re-pushed into an empty batch, so this does not recurse.
    void flush() {
        add_batch();
        const size_t k = nq;
        if (k == 0) return;
        qb.swap(qb2);
        qp.swap(qp2);
        nq = 0;
        for (size_t i = 0; i < k; i++) push(qb2[i], qp2[i]);
    }

    // Flush until nothing is pending or deferred (end of a window).
    void finish() {
        while (np > 0 || nq > 0) flush();
    }

    void add_batch() {
        if (np == 0) {
            cur++;
            return;
        }
        F run = sub(pp[0].x, bucket[pb[0]].x);
        acc[0] = run;
        for (size_t j = 1; j < np; j++) {
            run = mul(run, sub(pp[j].x, bucket[pb[j]].x));
            acc[j] = run;
        }
        F iv = inv(run);
        for (size_t j = np; j-- > 0;) {
            Aff<F>& B = bucket[pb[j]];
            const Aff<F>& P = pp[j];
            F dx = sub(P.x, B.x);
            F ij = j ? mul(iv, acc[j - 1]) : iv;
            if (j) iv = mul(iv, dx);
            F lam = mul(sub(P.y, B.y), ij);
            F x3 = sub(sub(sqr(lam), B.x), P.x);
            B.y = sub(mul(lam, sub(B.x, x3)), B.y);
            B.x = x3;
        }
        np = 0;
        cur++;
    }
};

// Sum of the window: sum_k (k+1) * bucket_k, by running sums.
template <class F>
static Xyzz<F> reduce_batch(BatchAdder<F>& ba, size_t nb) {
    Xyzz<F> run, acc;
    xyzz_set_inf(run);
    xyzz_set_inf(acc);
    for (size_t k = nb; k-- > 0;) {
        if (ba.full[k]) xyzz_madd(run, ba.bucket[k]);
        if (ba.has_over[k]) xyzz_add(run, ba.over[k]);
        xyzz_add(acc, run);
    }
    return acc;
}

template <class F>
static Xyzz<F> reduce_xyzz(std::vector<Xyzz<F>>& b, size_t nb) {
    Xyzz<F> run, acc;
    xyzz_set_inf(run);
    xyzz_set_inf(acc);
    for (size_t k = nb; k-- > 0;) {
        xyzz_add(run, b[k]);
        xyzz_add(acc, run);
    }
    return acc;
}

// Batch size of the affine bucket additions for nb buckets (0: XYZZ buckets only).
static size_t batch_size(size_t nb) {
    if (nb < 128) return 0;
    size_t batch = nb / 4;
    return batch > 512 ? 512 : batch;
}

// Window width minimising a cost model in units of one batched affine addition (~6 multiplications):
// a point costs 1, plus ~0.3 more when it collides with a pending addition of its bucket (fraction
// ~ batch/(2 nb); it is deferred, or at worst goes to an XYZZ bucket) and its share of the batch's
// inversion (~60/batch); without batching (few buckets) a point costs 1.7 (XYZZ mixed addition).
// Reducing a window costs ~3.5 per bucket (running sums), and combining windows c doublings (~1.5 each).
static int choose_c(const std::vector<size_t>& cnt_ge, int maxbits, size_t* windows) {
    double best = 1e300;
    int bc = 1;
    for (int c = 1; c <= 20; c++) {
        const size_t nb = (size_t)1 << (c - 1);
        const size_t batch = batch_size(nb);
        const double per_point =
            batch ? 1.0 + 0.3 * (double)batch / (2.0 * (double)nb) + 60.0 / (double)batch : 1.7;
        int W = (maxbits + 1 + c - 1) / c;
        double cost = 0;
        for (int k = 0; k < W; k++) {
            int b = k * c;
            size_t m = b <= maxbits ? cnt_ge[b] : 0;
            cost += (double)m * per_point + 3.5 * (double)nb;
        }
        cost += (double)W * c * 1.5;
        if (cost < best) {
            best = cost;
            bc = c;
        }
    }
    *windows = (size_t)((maxbits + 1 + bc - 1) / bc);
    return bc;
}

template <class F>
static void msm(const void* handle, const u64* scalars, size_t offset, size_t n, u64* out) {
    const Bases<F>* B = static_cast<const Bases<F>*>(handle);
    const size_t W = sizeof(F) / 8;
    Xyzz<F> total;
    xyzz_set_inf(total);
    if (!B || offset > B->h.n || n > B->h.n - offset) {
        // caller error: return infinity rather than read out of bounds
        std::memset(out, 0, 2 * W * 8);
        return;
    }
    const Aff<F>* pts = B->pts + offset;

    // classify
    std::vector<uint32_t> idx;
    std::vector<Scalar> sc;
    std::vector<uint8_t> sneg;
    std::vector<uint16_t> blen;
    idx.reserve(n);
    sc.reserve(n);
    sneg.reserve(n);
    blen.reserve(n);
    std::vector<size_t> hist(258, 0);
    Xyzz<F> ones;
    xyzz_set_inf(ones);
    for (size_t i = 0; i < n; i++) {
        const u64* s = scalars + 4 * i;
        if ((s[0] | s[1] | s[2] | s[3]) == 0) continue;
        if (aff_is_inf(pts[i])) continue;
        Scalar v;
        uint8_t ng = 0;
        if (gt(s, R_HALF)) {
            u64 br = 0;
            for (int j = 0; j < 4; j++) {
                u128 d = (u128)R_MOD[j] - s[j] - br;
                v.v[j] = (u64)d;
                br = (u64)(d >> 64) & 1;
            }
            ng = 1;
        } else {
            for (int j = 0; j < 4; j++) v.v[j] = s[j];
        }
        if (v.v[0] == 1 && (v.v[1] | v.v[2] | v.v[3]) == 0) {
            if (ng)
                xyzz_msub(ones, pts[i]);
            else
                xyzz_madd(ones, pts[i]);
            continue;
        }
        int bl = bitlen(v.v);
        idx.push_back((uint32_t)i);
        sc.push_back(v);
        sneg.push_back(ng);
        blen.push_back((uint16_t)bl);
        hist[bl]++;
    }
    size_t m = idx.size();
    if (m > 0) {
        int maxbits = 0;
        for (int b = 256; b >= 0; b--) {
            if (hist[b]) {
                maxbits = b;
                break;
            }
        }
        // order by bit length, descending (counting sort)
        std::vector<size_t> start(258, 0);
        for (int b = 256; b >= 0; b--) start[b] = start[b + 1] + hist[b + 1];
        // start[b] = number of points with bit length > b
        std::vector<uint32_t> order(m);
        {
            std::vector<size_t> pos(start.begin(), start.end());
            for (size_t j = 0; j < m; j++) order[pos[blen[j]]++] = (uint32_t)j;
        }
        // cnt_ge[b] = number with bit length >= b
        std::vector<size_t> cnt_ge(maxbits + 2, 0);
        for (int b = maxbits; b >= 0; b--) cnt_ge[b] = cnt_ge[b + 1] + hist[b];
        size_t nwin;
        int c = choose_c(cnt_ge, maxbits, &nwin);
        size_t nb = (size_t)1 << (c - 1);
        const int64_t half = (int64_t)1 << (c - 1);
        const int64_t full = (int64_t)1 << c;

        // signed digits of every scalar (in sorted order), window by window
        std::vector<uint8_t> carry(m, 0);
        std::vector<int32_t> dig(m);
        std::vector<Xyzz<F>> wres(nwin);
        const size_t batch = batch_size(nb);
        const bool use_batch = batch > 0;
        BatchAdder<F> ba;
        std::vector<Xyzz<F>> xb;
        if (use_batch)
            ba.init(nb, batch);
        else
            xb.resize(nb);
        for (size_t w = 0; w < nwin; w++) {
            int pos = (int)w * c;
            size_t cnt = (size_t)pos <= (size_t)maxbits ? cnt_ge[pos] : 0;
            // points order[0..cnt) have bit length >= pos
            if (use_batch)
                ba.reset();
            else
                for (size_t k = 0; k < nb; k++) xyzz_set_inf(xb[k]);
            for (size_t t = 0; t < cnt; t++) {
                uint32_t j = order[t];
                int64_t d = (int64_t)bits_at(sc[j].v, pos, c) + carry[j];
                if (d > half) {
                    d -= full;
                    carry[j] = 1;
                } else {
                    carry[j] = 0;
                }
                dig[t] = (int32_t)d;
            }
            for (size_t t = 0; t < cnt; t++) {
                if (t + 8 < cnt) {
                    __builtin_prefetch(&pts[idx[order[t + 8]]]);
                    if (use_batch) {
                        int32_t d8 = dig[t + 8];
                        if (d8) __builtin_prefetch(&ba.bucket[(d8 < 0 ? -d8 : d8) - 1]);
                    }
                }
                int32_t d = dig[t];
                if (d == 0) continue;
                uint32_t j = order[t];
                const Aff<F>& P = pts[idx[j]];
                bool ng = (d < 0) ^ (sneg[j] != 0);
                uint32_t bk = (uint32_t)((d < 0 ? -d : d) - 1);
                if (use_batch) {
                    if (ng) {
                        Aff<F> q = {P.x, neg(P.y)};
                        ba.push(bk, q);
                    } else {
                        ba.push(bk, P);
                    }
                } else {
                    if (ng)
                        xyzz_msub(xb[bk], P);
                    else
                        xyzz_madd(xb[bk], P);
                }
            }
            if (use_batch) {
                ba.finish();
                wres[w] = reduce_batch(ba, nb);
            } else {
                wres[w] = reduce_xyzz(xb, nb);
            }
        }
        for (size_t w = nwin; w-- > 0;) {
            for (int k = 0; k < c; k++) xyzz_dbl(total);
            xyzz_add(total, wres[w]);
        }
    }
    xyzz_add(total, ones);
    Aff<F> r = xyzz_to_aff(total);
    store_elem(r.x, out);
    store_elem(r.y, out + W);
}

// ------------------------------------------------------------------------------------------------ NTT

static Fr root_of_unity(unsigned logn) {  // primitive 2^logn-th root of unity, Montgomery form
    // (r-1) >> 28
    u64 e[4];
    u64 rm1[4] = {R_MOD[0] - 1, R_MOD[1], R_MOD[2], R_MOD[3]};
    for (int i = 0; i < 4; i++) e[i] = (rm1[i] >> 28) | (i < 3 ? rm1[i + 1] << 36 : 0);
    u64 five[4] = {5, 0, 0, 0};
    Fr g = to_mont<1>(five);
    Fr w = pow_limbs(g, e);  // order 2^28
    for (unsigned k = logn; k < 28; k++) w = sqr(w);
    return w;
}

// Twiddles laid out per stage: st[h + j] = w_{2h}^j for j < h, h = 1, 2, 4, ..., n/2 (w_{2h} a primitive
// 2h-th root of unity), so every stage reads its twiddles contiguously.
static std::vector<Fr> stage_twiddles(const Fr& w, size_t n) {
    std::vector<Fr> st(n);
    size_t hn = n / 2;
    // powers of w (order n) into the last stage, then each earlier stage takes every other entry
    st[hn] = fp_one<1>();
    for (size_t j = 1; j < hn; j++) st[hn + j] = mul(st[hn + j - 1], w);
    for (size_t h = hn / 2; h >= 1; h /= 2) {
        for (size_t j = 0; j < h; j++) st[h + j] = st[2 * h + 2 * j];
    }
    return st;
}

static std::vector<uint32_t> bit_rev_table(size_t n, unsigned logn) {
    std::vector<uint32_t> rev(n);
    rev[0] = 0;
    for (size_t i = 1; i < n; i++) rev[i] = (uint32_t)((rev[i >> 1] >> 1) | ((i & 1) << (logn - 1)));
    return rev;
}

// Radix-2 decimation in frequency: natural-order input, bit-reversed output.
static void ntt_dif(Fr* a, size_t n, const Fr* st) {
    for (size_t h = n / 2; h >= 2; h >>= 1) {
        const Fr* tw = st + h;
        for (size_t i = 0; i < n; i += 2 * h) {
            Fr* lo = a + i;
            Fr* hi = a + i + h;
            Fr u = lo[0], v = hi[0];
            lo[0] = add(u, v);
            hi[0] = sub(u, v);
            for (size_t j = 1; j < h; j++) {
                u = lo[j];
                v = hi[j];
                lo[j] = add(u, v);
                hi[j] = mul(sub(u, v), tw[j]);
            }
        }
    }
    for (size_t i = 0; i < n; i += 2) {  // last stage: twiddle 1
        Fr u = a[i], v = a[i + 1];
        a[i] = add(u, v);
        a[i + 1] = sub(u, v);
    }
}

// Radix-2 decimation in time: bit-reversed input, natural-order output.
static void ntt_dit(Fr* a, size_t n, const Fr* st) {
    for (size_t i = 0; i < n; i += 2) {  // first stage: twiddle 1
        Fr u = a[i], v = a[i + 1];
        a[i] = add(u, v);
        a[i + 1] = sub(u, v);
    }
    for (size_t h = 2; h < n; h <<= 1) {
        const Fr* tw = st + h;
        for (size_t i = 0; i < n; i += 2 * h) {
            Fr* lo = a + i;
            Fr* hi = a + i + h;
            Fr u = lo[0], v = hi[0];
            lo[0] = add(u, v);
            hi[0] = sub(u, v);
            for (size_t j = 1; j < h; j++) {
                u = lo[j];
                v = mul(hi[j], tw[j]);
                lo[j] = add(u, v);
                hi[j] = sub(u, v);
            }
        }
    }
}

// A, B and C = A.B, given as evaluations on the domain D of size n (standard form), evaluated on the coset g.D
// (inverse NTT, coefficient j times g^j, NTT), in natural order. The inverse transform runs DIF (coefficients
// come out bit-reversed), the coset scaling follows that order, and the forward transform runs DIT from
// bit-reversed input: no permutation pass at all. n is a power of two >= 2.
struct Domain {
    size_t n;
    unsigned logn;
    std::vector<Fr> tw, twi;    // stage twiddles of w and w^-1, w the primitive n-th root of unity
    std::vector<uint32_t> rev;  // bit reversal of log2(n) bits
    Fr ninv;
};

static Domain make_domain(size_t n) {
    Domain d;
    d.n = n;
    d.logn = 0;
    while (((size_t)1 << d.logn) < n) d.logn++;
    Fr w = root_of_unity(d.logn);
    d.tw = stage_twiddles(w, n);
    d.twi = stage_twiddles(inv(w), n);
    d.rev = bit_rev_table(n, d.logn);
    u64 nn[4] = {(u64)n, 0, 0, 0};
    d.ninv = inv(to_mont<1>(nn));
    return d;
}

static void on_coset(const u64* a, const u64* b, const Domain& d, const Fr& g, std::vector<Fr>& A,
                     std::vector<Fr>& B, std::vector<Fr>& C) {
    const size_t n = d.n;
    A.resize(n);
    B.resize(n);
    C.resize(n);
    for (size_t i = 0; i < n; i++) {
        A[i] = to_mont<1>(a + 4 * i);
        B[i] = to_mont<1>(b + 4 * i);
        C[i] = mul(A[i], B[i]);
    }
    std::vector<Fr> shift(n), shift_br(n);  // n^-1 g^k, then in bit-reversed order
    shift[0] = d.ninv;
    for (size_t k = 1; k < n; k++) shift[k] = mul(shift[k - 1], g);
    for (size_t k = 0; k < n; k++) shift_br[k] = shift[d.rev[k]];
    std::vector<Fr>* vs[3] = {&A, &B, &C};
    for (auto* vp : vs) {
        Fr* x = vp->data();
        ntt_dif(x, n, d.twi.data());
        for (size_t k = 0; k < n; k++) x[k] = mul(x[k], shift_br[k]);
        ntt_dit(x, n, d.tw.data());
    }
}

static bool valid_domain(size_t n) { return n != 0 && (n & (n - 1)) == 0 && n <= ((size_t)1 << 27); }

// arkworks' CircomReduction witness map (keys imported from a snarkjs .zkey): h = A'.B' - C' on the odd powers
// of the primitive 2n-th root of unity g (the coset g.D).
static void circom_h(const u64* a, const u64* b, size_t n, u64* h) {
    if (!valid_domain(n)) return;  // not a power of two, or too large
    if (n == 1) {  // size-1 transforms are the identity, so h = A.B - C = 0
        std::memset(h, 0, 32);
        return;
    }
    std::vector<Fr> A, B, C;
    Domain d = make_domain(n);
    on_coset(a, b, d, root_of_unity(d.logn + 1), A, B, C);
    for (size_t i = 0; i < n; i++) from_mont<1>(sub(mul(A[i], B[i]), C[i]), h + 4 * i);
}

// arkworks' LibsnarkReduction witness map (the keys of groth16py's own setup); n >= 2: on the coset 5.D, divide
// A'.B' - C' by the vanishing polynomial there (the constant 5^n - 1) and return the quotient's coefficients
// (inverse NTT, coefficient j times 5^-j), in natural order.
static void libsnark_h(const u64* a, const u64* b, size_t n, u64* h) {
    if (!valid_domain(n) || n < 2) return;
    u64 five[4] = {5, 0, 0, 0};
    const Fr g = to_mont<1>(five);
    Domain d = make_domain(n);
    std::vector<Fr> A, B, C;
    on_coset(a, b, d, g, A, B, C);
    Fr gn = g;
    for (unsigned k = 0; k < d.logn; k++) gn = sqr(gn);
    const Fr zinv = inv(sub(gn, fp_one<1>()));
    for (size_t i = 0; i < n; i++) A[i] = mul(sub(mul(A[i], B[i]), C[i]), zinv);
    ntt_dif(A.data(), n, d.twi.data());  // coefficients on the coset, bit-reversed
    std::vector<Fr> unshift(n);          // n^-1 g^-k, natural order
    const Fr gi = inv(g);
    unshift[0] = d.ninv;
    for (size_t k = 1; k < n; k++) unshift[k] = mul(unshift[k - 1], gi);
    for (size_t k = 0; k < n; k++) from_mont<1>(mul(A[k], unshift[d.rev[k]]), h + 4 * (size_t)d.rev[k]);
}

}  // namespace

// ------------------------------------------------------------------------------------------------ C ABI

extern "C" {

void* g16_g1_bases(const uint64_t* xy, size_t n) { return make_bases<Fq>(xy, n, 1); }

void* g16_g2_bases(const uint64_t* xy, size_t n) { return make_bases<Fq2>(xy, n, 2); }

size_t g16_bases_len(const void* h) { return h ? static_cast<const BasesHeader*>(h)->n : 0; }

void g16_free_bases(void* h) {
    if (!h) return;
    BasesHeader* hd = static_cast<BasesHeader*>(h);
    if (hd->kind == 1) {
        Bases<Fq>* b = static_cast<Bases<Fq>*>(h);
        std::free(b->pts);
        delete b;
    } else {
        Bases<Fq2>* b = static_cast<Bases<Fq2>*>(h);
        std::free(b->pts);
        delete b;
    }
}

void g16_msm_g1(const void* bases, const uint64_t* scalars, size_t offset, size_t n, uint64_t* out8) {
    msm<Fq>(bases, scalars, offset, n, out8);
}

void g16_msm_g2(const void* bases, const uint64_t* scalars, size_t offset, size_t n, uint64_t* out16) {
    msm<Fq2>(bases, scalars, offset, n, out16);
}

void g16_circom_h(const uint64_t* a, const uint64_t* b, size_t n, uint64_t* h) { circom_h(a, b, n, h); }

void g16_libsnark_h(const uint64_t* a, const uint64_t* b, size_t n, uint64_t* h) { libsnark_h(a, b, n, h); }

void g16_sparse_matvec(const uint32_t* row_ptr, const uint32_t* cols, const uint64_t* coeffs, size_t rows,
                       const uint64_t* w, uint64_t* out) {
    Fr r2;
    for (int i = 0; i < 4; i++) r2.v[i] = FpParams<1>::R2[i];
    for (size_t i = 0; i < rows; i++) {
        Fr acc = {{0, 0, 0, 0}};
        for (uint32_t k = row_ptr[i]; k < row_ptr[i + 1]; k++) {
            Fr c, x;
            std::memcpy(c.v, coeffs + 4 * (size_t)k, 32);
            std::memcpy(x.v, w + 4 * (size_t)cols[k], 32);
            acc = add(acc, mul(c, x));  // c.x/R
        }
        acc = mul(acc, r2);  // (sum c.x/R).R^2/R = sum c.x
        std::memcpy(out + 4 * i, acc.v, 32);
    }
}

int g16_selftest(void) {
    // R^2 * 1 in Montgomery = R; from_mont(ONE) must be 1 in both fields; w^(2^28) = 1, w^(2^27) != 1
    u64 o[4];
    from_mont<0>(fp_one<0>(), o);
    if (o[0] != 1 || o[1] | o[2] | o[3]) return 1;
    from_mont<1>(fp_one<1>(), o);
    if (o[0] != 1 || o[1] | o[2] | o[3]) return 2;
    Fr w = root_of_unity(28);
    Fr x = w;
    for (int k = 0; k < 27; k++) x = sqr(x);
    if (eq(x, fp_one<1>())) return 3;
    x = sqr(x);
    if (!eq(x, fp_one<1>())) return 4;
    return 0;
}

}  // extern "C"
