/* CPU kernels for the reduced-precision forward, for CPUs with AVX-512 BF16 (and VNNI): fused bf16
 * self-attention over packed sequences, a per-row int8 Linear layer in one call (quantizing its
 * input rows, the int8 matmul, and the row scales, bias and GELU on its products), and the residual
 * add with LayerNorm that ends each sub-layer (at the end).
 *
 * Built and loaded at run time by bioprune/cpu_kernels.py (which says why and when). For each
 * (sequence, head), with the head's queries Q (n x dh), keys and values K, V (m x dh: the sequence's
 * own n tokens, then its nc frozen context tokens):
 *
 *     out = softmax(round_bf16(round_bf16(Q * scaling) K^T)) V      (softmax in fp32, P rounded to bf16)
 *
 * the same roundings as bioprune.layer.packed_attention's torch ops (bf16 matmuls accumulate in
 * fp32 and round their output), so it matches them to the last bit on nearly every element. The
 * (n x m) scores of four query rows at a time stay in L1 instead of going through memory three
 * times (matmul, softmax, matmul), and both products run on VDPBF16PS, two bf16 products per fp32
 * lane: keys are re-laid out per 16-key block as (dim pair) x 16 keys, values per key pair as
 * dh x (2 keys), the layouts the instruction reads (the "VNNI" layout of oneDNN's bf16 kernels).
 * Work items (sequence, head) are shared among OpenMP threads: the runtime torch itself loaded
 * (libgomp.so.1), so the kernel reuses torch's thread pool instead of competing with it.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#define ROWS 4 /* query rows per pass: 4 score accumulators, 4 x dh/16 context accumulators */

/* e^x for x <= 0 (the softmax's shifted scores), Cephes' expf polynomial; exactly 0 below -87 */
static inline __m512 exp_ps(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.0f);
    __mmask16 live = _mm512_cmp_ps_mask(x, lo, _CMP_GT_OQ);
    x = _mm512_max_ps(x, lo);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(y, n));
}

static inline __m512 bf16_to_ps(__m256i b) { /* 16 bf16 -> 16 fp32, exact */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

static inline __m512 round_bf16(__m512 x) { /* to the nearest bf16 (ties to even) and back */
    return bf16_to_ps((__m256i)_mm512_cvtneps_pbh(x));
}

/* Row j of the keys (or values): the sequence's own tokens first, then its frozen context. */
static inline const uint16_t *row(const uint16_t *own, long own_stride, const uint16_t *ctx, long ctx_stride,
                                  int n, int j) {
    return j < n ? own + (long)j * own_stride : ctx + (long)(j - n) * ctx_stride;
}

/* Scores of ROWS queries (dim pairs, qr[r]) x NB blocks of 16 keys (kb: blocks x P2 x 16), rounded
 * to bf16, into s (row stride m16); keys past ``left`` (= m - first key) get -inf. Two blocks give
 * 2 x ROWS independent accumulators, enough to hide VDPBF16PS's latency (one block's ROWS chains
 * waited on it); each accumulator still sums its dim pairs in order, so the scores are the same bits. */
static inline __attribute__((always_inline)) void score_blocks(
    const int NB, const int P2, const uint32_t *const *qr, const uint32_t *kb, int left, float *s, long m16)
{
    __m512 acc[2][ROWS];
    for (int x = 0; x < NB; x++)
        for (int r = 0; r < ROWS; r++) acc[x][r] = _mm512_setzero_ps();
    for (int d = 0; d < P2; d++)
        for (int x = 0; x < NB; x++) {
            __m512bh keys = (__m512bh)_mm512_loadu_si512(kb + (long)x * P2 * 16 + d * 16);
            for (int r = 0; r < ROWS; r++)
                acc[x][r] = _mm512_dpbf16_ps(acc[x][r], (__m512bh)_mm512_set1_epi32((int)qr[r][d]), keys);
        }
    for (int x = 0; x < NB; x++) {
        int rest = left - x * 16;
        __mmask16 real = rest >= 16 ? 0xFFFF : (__mmask16)((1u << rest) - 1);
        for (int r = 0; r < ROWS; r++) /* keys past m: -inf, no weight */
            _mm512_storeu_ps(s + (long)r * m16 + x * 16,
                             _mm512_mask_mov_ps(_mm512_set1_ps(-__builtin_inff()), real, round_bf16(acc[x][r])));
    }
}

typedef struct {
    uint32_t *q;  /* n x dh/2: scaled queries, dim pairs */
    uint32_t *k;  /* blocks x dh/2 x 16: keys, per 16-key block and dim pair */
    uint32_t *v;  /* pairs x dh: values, per key pair and dim (2 keys) */
    float *s;     /* ROWS x m16: scores, then exponentials */
    uint16_t *p;  /* ROWS x m16: probabilities (bf16) */
} Scratch;

static inline __attribute__((always_inline)) void one_head(
    const int DH, const uint16_t *q, long qs, const uint16_t *k, long ks, const uint16_t *v, long vs,
    const uint16_t *ck, long cks, const uint16_t *cv, long cvs, int n, int nc, float scaling,
    uint16_t *out, long os, const Scratch *w)
{
    const int m = n + nc, P2 = DH / 2, blocks = (m + 15) / 16, m16 = blocks * 16, pairs = (m + 1) / 2;
    const __m512 scale = _mm512_set1_ps(scaling);
    for (int i = 0; i < n; i++) /* Q * scaling, rounded to bf16 */
        for (int c = 0; c < DH; c += 32) {
            __m512 lo = _mm512_mul_ps(bf16_to_ps(_mm256_loadu_si256((const __m256i *)(q + (long)i * qs + c))), scale);
            __m512 hi = _mm512_mul_ps(bf16_to_ps(_mm256_loadu_si256((const __m256i *)(q + (long)i * qs + c + 16))), scale);
            _mm512_storeu_si512(w->q + (long)i * P2 + c / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    for (int b = 0; b < blocks; b++) /* K: 16 keys x dim pairs -> dim pairs x 16 keys */
        for (int jj = 0; jj < 16; jj++) {
            int j = b * 16 + jj;
            uint32_t *dst = w->k + (long)b * P2 * 16 + jj;
            if (j < m) {
                const uint32_t *src = (const uint32_t *)row(k, ks, ck, cks, n, j);
                for (int d = 0; d < P2; d++) dst[d * 16] = src[d];
            } else
                for (int d = 0; d < P2; d++) dst[d * 16] = 0;
        }
    const __m512i first = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                           39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i second = _mm512_add_epi16(first, _mm512_set1_epi16(16));
    for (int t = 0; t < pairs; t++) /* V: keys 2t and 2t+1 interleaved, dim by dim */
        for (int c = 0; c < DH; c += 32) {
            __m512i a = _mm512_loadu_si512(row(v, vs, cv, cvs, n, 2 * t) + c);
            __m512i b = 2 * t + 1 < m ? _mm512_loadu_si512(row(v, vs, cv, cvs, n, 2 * t + 1) + c) : _mm512_setzero_si512();
            _mm512_storeu_si512(w->v + (long)t * DH + c, _mm512_permutex2var_epi16(a, first, b));
            _mm512_storeu_si512(w->v + (long)t * DH + c + 16, _mm512_permutex2var_epi16(a, second, b));
        }
    for (int i0 = 0; i0 < n; i0 += ROWS) {
        const uint32_t *qr[ROWS]; /* past the last query: its row again, computed and not written */
        for (int r = 0; r < ROWS; r++) qr[r] = w->q + (long)(i0 + r < n ? i0 + r : n - 1) * P2;
        for (int b = 0; b < blocks; b += 2) { /* scores of ROWS queries x 32 keys (16 at the end) */
            if (b + 1 < blocks) score_blocks(2, P2, qr, w->k + (long)b * P2 * 16, m - b * 16, w->s + b * 16, m16);
            else score_blocks(1, P2, qr, w->k + (long)b * P2 * 16, m - b * 16, w->s + b * 16, m16);
        }
        for (int r = 0; r < ROWS; r++) { /* softmax in fp32, as torch's: exp(s - max) * (1 / sum) */
            float *s = w->s + (long)r * m16;
            __m512 top = _mm512_set1_ps(-__builtin_inff());
            for (int j = 0; j < m16; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(s + j));
            top = _mm512_set1_ps(_mm512_reduce_max_ps(top));
            __m512 sum = _mm512_setzero_ps();
            for (int j = 0; j < m16; j += 16) {
                __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s + j), top));
                _mm512_storeu_ps(s + j, e);
                sum = _mm512_add_ps(sum, e);
            }
            const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum)); /* one division per row */
            for (int j = 0; j < m16; j += 16)
                _mm256_storeu_si256((__m256i *)(w->p + (long)r * m16 + j),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(s + j), inv)));
        }
        __m512 acc[ROWS][DH / 16]; /* context of ROWS queries: P V over key pairs */
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < DH / 16; c++) acc[r][c] = _mm512_setzero_ps();
        for (int t = 0; t < pairs; t++)
            for (int c = 0; c < DH / 16; c++) {
                __m512bh vals = (__m512bh)_mm512_loadu_si512(w->v + (long)t * DH + c * 16);
                for (int r = 0; r < ROWS; r++)
                    acc[r][c] = _mm512_dpbf16_ps(acc[r][c],
                        (__m512bh)_mm512_set1_epi32(((const int *)(w->p + (long)r * m16))[t]), vals);
            }
        for (int r = 0; r < ROWS && i0 + r < n; r++)
            for (int c = 0; c < DH / 16; c++)
                _mm256_storeu_si256((__m256i *)(out + (long)(i0 + r) * os + c * 16),
                                    (__m256i)_mm512_cvtneps_pbh(acc[r][c]));
    }
}

/* q, k, v: rows of consecutive sequences (lengths[b] rows each; row strides in elements, columns
 * contiguous); ck, cv: their frozen context rows (frozen[b] each), or NULL. out: rows like q's.
 * Returns 0, or -1 for a head size other than 32 or 64 (nothing written). */
int bioprune_attention_bf16(const uint16_t *q, long qs, const uint16_t *k, long ks, const uint16_t *v, long vs,
                            const uint16_t *ck, long cks, const uint16_t *cv, long cvs,
                            const int *lengths, const int *frozen, int batch, int n_heads, int dh,
                            float scaling, uint16_t *out, long os, int threads)
{
    if (dh != 32 && dh != 64) return -1;
    long *start = malloc(sizeof(long) * 2 * (batch + 1)), *c_start = start + batch + 1;
    int max_m = 0;
    start[0] = c_start[0] = 0;
    for (int b = 0; b < batch; b++) {
        int nc = frozen ? frozen[b] : 0;
        start[b + 1] = start[b] + lengths[b];
        c_start[b + 1] = c_start[b] + nc;
        if (lengths[b] + nc > max_m) max_m = lengths[b] + nc;
    }
    const long m16 = (max_m + 15) / 16 * 16 + 16;
#pragma omp parallel num_threads(threads)
    {
        Scratch w = {aligned_alloc(64, sizeof(uint32_t) * m16 * dh / 2), aligned_alloc(64, sizeof(uint32_t) * m16 * dh / 2),
                     aligned_alloc(64, sizeof(uint32_t) * m16 * dh), aligned_alloc(64, sizeof(float) * ROWS * m16),
                     aligned_alloc(64, sizeof(uint16_t) * ROWS * m16)};
#pragma omp for schedule(dynamic, 1)
        for (int item = 0; item < batch * n_heads; item++) {
            int b = item / n_heads, n = lengths[b], nc = frozen ? frozen[b] : 0;
            if (n == 0) continue;
            long off = (long)(item % n_heads) * dh;
            const uint16_t *qb = q + start[b] * qs + off, *kb = k + start[b] * ks + off, *vb = v + start[b] * vs + off;
            const uint16_t *ckb = nc ? ck + c_start[b] * cks + off : NULL, *cvb = nc ? cv + c_start[b] * cvs + off : NULL;
            uint16_t *ob = out + start[b] * os + off;
            if (dh == 32) one_head(32, qb, qs, kb, ks, vb, vs, ckb, cks, cvb, cvs, n, nc, scaling, ob, os, &w);
            else one_head(64, qb, qs, kb, ks, vb, vs, ckb, cks, cvb, cvs, n, nc, scaling, ob, os, &w);
        }
        free(w.q); free(w.k); free(w.v); free(w.s); free(w.p);
    }
    free(start);
    return 0;
}

/* Per-row symmetric quantization of one bf16 row (cols), smoothed per column, as
 * bioprune.int8.quantize_rows_in_torch computes it, bit for bit, in one pass (the row stays in L1
 * between its two reads):
 *     xs = x * inv_smooth;  scale = max(max_c |xs_c| / 127, 1e-8)
 *     out = clamp(round(xs * (1 / scale)), -127, 127) + 128      (uint8, zero point 128)
 * inv_smooth may be NULL. Writes cols levels to out and the row's scale to *row_scale. */
static inline void quantize_row(const uint16_t *xr, long cols, const float *inv_smooth, uint8_t *out,
                                float *row_scale)
{
    __m512 top = _mm512_setzero_ps();
    for (long c = 0; c < cols; c += 16) {
        __mmask16 live = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
        __m512 v = bf16_to_ps(_mm256_maskz_loadu_epi16(live, xr + c));
        if (inv_smooth) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(live, inv_smooth + c));
        top = _mm512_max_ps(top, _mm512_abs_ps(v));
    }
    float scale = _mm512_reduce_max_ps(top) / 127.0f;
    if (!(scale >= 1e-8f)) scale = 1e-8f;
    const __m512 inv = _mm512_set1_ps(1.0f / scale);
    *row_scale = scale;
    for (long c = 0; c < cols; c += 16) {
        __mmask16 live = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
        __m512 v = bf16_to_ps(_mm256_maskz_loadu_epi16(live, xr + c));
        if (inv_smooth) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(live, inv_smooth + c));
        v = _mm512_roundscale_ps(_mm512_mul_ps(v, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
        v = _mm512_add_ps(v, _mm512_set1_ps(128.0f));
        _mm_mask_storeu_epi8(out + c, live, _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(v)));
    }
}

/* erfc(z) for z >= 0 to a relative error below 1.2e-7 (the Chebyshev fit of Numerical Recipes'
 * erfcc, Press et al. 2007, 6.2.2): relative, so 1 + erf(x) = erfc(-x) of a negative GELU input
 * keeps its digits where computing it as 1 + erf(x) would cancel them away. */
static inline __m512 erfc_ps(__m512 z) {
    const __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(d); /* 1 / d to 14 bits, then one Newton step */
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
    static const float c[10] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f, -0.18628806f,
                                0.27886807f, -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
    __m512 p = _mm512_set1_ps(c[9]);
    for (int i = 8; i >= 0; i--) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c[i]));
    return _mm512_mul_ps(t, exp_ps(_mm512_fnmadd_ps(z, z, p)));
}

/* Exact GELU, y * Phi(y) = 0.5 y erfc(-y / sqrt 2), to about 2e-7 relative */
static inline __m512 gelu_ps(__m512 y) {
    const __m512 c = erfc_ps(_mm512_mul_ps(_mm512_abs_ps(y), _mm512_set1_ps(0.70710678118654752f)));
    const __mmask16 negative = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 phi2 = _mm512_mask_mov_ps(_mm512_sub_ps(_mm512_set1_ps(2.0f), c), negative, c); /* 2 Phi(y) */
    return _mm512_mul_ps(_mm512_mul_ps(y, _mm512_set1_ps(0.5f)), phi2);
}

/* A per-row int8 Linear layer in one call (bioprune.int8.Int8Linear): quantize each bf16 input row
 * on its own scale (quantize_row), multiply by the int8 weights on VPDPBUSD (u8 x s8, four products
 * per int32 lane), and end each output in registers:
 *     acc = sum_k (q_rk + 128) w_kc - comp_c               (int32, exact: comp_c = 128 sum_k w_kc)
 *     y = float(acc) * wscale_c * row_scale_r + bias_c;  gelu ? 0.5 y erfc(-y / sqrt 2) : y  -> bf16
 * the ops, in that order, that oneDNN's u8 x s8 matmul (weight scales applied in fp32) and the
 * separate row-scale pass gave, so the same bits. oneDNN's kernels are built for big matrices; at
 * the sizes of one abstract (a few hundred rows), with a quantize and a dequantize pass around
 * each call, that path ran at ~40% of the int8 roof, this one near it (results/benchmark_kernels.json).
 *
 * Weights are pre-packed (bioprune.int8.vnni_pack) as 64-column blocks, each K/4 steps of four
 * 16-column vectors holding 4 consecutive k of each column (the layout VPDPBUSD reads), columns
 * padded to a multiple of 64 and k to a multiple of 4 with zero weights; comp, wscale and bias
 * (NULL: none) padded likewise. A tile is 6 rows x 64 columns: 24 accumulators in registers, one
 * broadcast of 4 input bytes feeding 4 products. Tiles are shared among the threads column block
 * by column block, so a thread's weights stay in its cache while rows stream past. */
#define TILE_ROWS 6
#define DP_ROW(r, x) \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, x, w0); c##r##1 = _mm512_dpbusd_epi32(c##r##1, x, w1); \
    c##r##2 = _mm512_dpbusd_epi32(c##r##2, x, w2); c##r##3 = _mm512_dpbusd_epi32(c##r##3, x, w3);
#define END_ONE(r, j) if (r < rows) { \
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c##r##j, cj)), sj), \
                             _mm512_set1_ps(row_scale[r])); \
    if (bias) y = _mm512_add_ps(y, bj); \
    if (gelu) y = gelu_ps(y); \
    _mm256_mask_storeu_epi16(out + r * os + 16 * j, live, (__m256i)_mm512_cvtneps_pbh(y)); }
#define END_VECTOR(j) { \
    const int rest = cols - 16 * j; \
    const __mmask16 live = rest >= 16 ? 0xFFFF : rest <= 0 ? 0 : (__mmask16)((1u << rest) - 1); \
    const __m512i cj = _mm512_loadu_si512(comp + 16 * j); \
    const __m512 sj = _mm512_loadu_ps(wscale + 16 * j), bj = bias ? _mm512_loadu_ps(bias + 16 * j) : sj; \
    END_ONE(0, j) END_ONE(1, j) END_ONE(2, j) END_ONE(3, j) END_ONE(4, j) END_ONE(5, j) }

/* One tile: rows (<= TILE_ROWS) quantized rows of q (row stride kp) x a 64-column block (cols of
 * them real) of packed weights b -> out (row stride os). Missing rows re-read row 0, unstored. */
static void int8_tile(const uint8_t *q, long kp, int rows, const int8_t *b, int cols, const int32_t *comp,
                      const float *wscale, const float *row_scale, const float *bias, int gelu, uint16_t *out,
                      long os)
{
    const uint8_t *q0 = q, *q1 = q + (rows > 1) * kp, *q2 = q + (rows > 2) * 2 * kp,
                  *q3 = q + (rows > 3) * 3 * kp, *q4 = q + (rows > 4) * 4 * kp, *q5 = q + (rows > 5) * 5 * kp;
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
            c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00,
            c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    for (long k = 0; k < kp; k += 4, b += 256) { /* named accumulators: an array of them went to the stack */
        const __m512i w0 = _mm512_loadu_si512(b), w1 = _mm512_loadu_si512(b + 64),
                      w2 = _mm512_loadu_si512(b + 128), w3 = _mm512_loadu_si512(b + 192);
        __m512i x;
        x = _mm512_set1_epi32(*(const int32_t *)(q0 + k)); DP_ROW(0, x)
        x = _mm512_set1_epi32(*(const int32_t *)(q1 + k)); DP_ROW(1, x)
        x = _mm512_set1_epi32(*(const int32_t *)(q2 + k)); DP_ROW(2, x)
        x = _mm512_set1_epi32(*(const int32_t *)(q3 + k)); DP_ROW(3, x)
        x = _mm512_set1_epi32(*(const int32_t *)(q4 + k)); DP_ROW(4, x)
        x = _mm512_set1_epi32(*(const int32_t *)(q5 + k)); DP_ROW(5, x)
    }
    END_VECTOR(0) END_VECTOR(1) END_VECTOR(2) END_VECTOR(3)
}

/* x (rows x k bf16, row stride xs) -> out (rows x n bf16, row stride os); see above. Returns 0, or
 * 1 when its scratch (the quantized rows) could not be allocated. */
int bioprune_int8_linear(const uint16_t *x, long rows, long k, long xs, const float *inv_smooth,
                         const int8_t *packed, const int32_t *comp, const float *wscale, const float *bias, long n,
                         int gelu, uint16_t *out, long os, int threads)
{
    const long kp = (k + 3) / 4 * 4, blocks = (n + 63) / 64, tiles = (rows + TILE_ROWS - 1) / TILE_ROWS;
    uint8_t *q = malloc(rows * kp + 64);
    float *row_scale = malloc(rows * sizeof(float) + 64);
    if (!q || !row_scale) {
        free(q);
        free(row_scale);
        return 1;
    }
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++) {
            quantize_row(x + r * xs, k, inv_smooth, q + r * kp, row_scale + r);
            for (long c = k; c < kp; c++) q[r * kp + c] = 128; /* level 0 (its weights are 0 too) */
        }
#pragma omp for schedule(static)
        for (long item = 0; item < blocks * tiles; item++) {
            const long block = item / tiles, r0 = (item % tiles) * TILE_ROWS, c0 = block * 64;
            int8_tile(q + r0 * kp, kp, rows - r0 < TILE_ROWS ? (int)(rows - r0) : TILE_ROWS, packed + c0 * kp,
                      n - c0 < 64 ? (int)(n - c0) : 64, comp + c0, wscale + c0, row_scale + r0,
                      bias ? bias + c0 : NULL, gelu, out + r0 * os + c0, os);
        }
    }
    free(q);
    free(row_scale);
    return 0;
}

/* The end of a BERT sub-layer (its output module): out = LayerNorm(h + residual), all bf16 (rows x
 * cols, row strides in elements), gamma and beta bf16 (cols): the sum rounded to bf16, as torch's
 * bf16 add gives it, then mean and variance of that row in fp32 (two passes over it, in L1) and
 * (v - mean) * rstd * gamma + beta rounded to the nearest bf16. torch runs the add and the norm as two
 * passes over memory, and its bf16 norm took ~50 us for 300 x 384 on 2 cores; here one pass reads
 * both inputs. Its mean and variance sum in another order than torch's, so an output can sit one
 * bf16 step from torch's (tests/test_cpu_kernels.py states how often). */
void bioprune_add_layer_norm(const uint16_t *h, long hs, const uint16_t *res, long rs, const uint16_t *gamma,
                             const uint16_t *beta, float eps, long rows, long cols, uint16_t *out, long os,
                             int threads)
{
    const long c16 = (cols + 15) / 16 * 16;
#pragma omp parallel num_threads(threads)
    {
        float v[c16] __attribute__((aligned(64))); /* a row's sum, in L1 */
        float g[c16] __attribute__((aligned(64))), b[c16] __attribute__((aligned(64))); /* gamma, beta in fp32 */
        for (long c = 0; c < cols; c += 16) {
            __mmask16 live = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
            _mm512_store_ps(g + c, bf16_to_ps(_mm256_maskz_loadu_epi16(live, gamma + c)));
            _mm512_store_ps(b + c, bf16_to_ps(_mm256_maskz_loadu_epi16(live, beta + c)));
        }
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++) {
            const uint16_t *hr = h + r * hs, *rr = res + r * rs;
            __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (long c = 0; c < cols; c += 16) { /* four partial sums: no chain of dependent adds */
                __mmask16 live = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
                __m512 x = round_bf16(_mm512_add_ps(bf16_to_ps(_mm256_maskz_loadu_epi16(live, hr + c)),
                                                    bf16_to_ps(_mm256_maskz_loadu_epi16(live, rr + c))));
                _mm512_store_ps(v + c, x);
                sum[(c / 16) & 3] = _mm512_add_ps(sum[(c / 16) & 3], x); /* masked-off lanes are 0 */
            }
            const __m512 m = _mm512_set1_ps(_mm512_reduce_add_ps(
                _mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3]))) / (float)cols);
            __m512 sq[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (long c = 0; c < cols; c += 16) {
                __mmask16 live = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
                __m512 d = _mm512_maskz_sub_ps(live, _mm512_load_ps(v + c), m);
                sq[(c / 16) & 3] = _mm512_fmadd_ps(d, d, sq[(c / 16) & 3]);
            }
            const float var = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(sq[0], sq[1]),
                                                                 _mm512_add_ps(sq[2], sq[3]))) / (float)cols;
            const __m512 rstd = _mm512_set1_ps(1.0f / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(var + eps))));
            uint16_t *o = out + r * os;
            for (long c = 0; c < cols; c += 16) {
                __mmask16 live = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
                __m512 y = _mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(v + c), m), rstd);
                y = _mm512_fmadd_ps(y, _mm512_load_ps(g + c), _mm512_load_ps(b + c));
                _mm256_mask_storeu_epi16(o + c, live, (__m256i)_mm512_cvtneps_pbh(y));
            }
        }
    }
}
