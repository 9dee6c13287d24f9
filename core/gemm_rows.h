/* gemm_rows.h - a matrix product whose every output row depends only on its own
 * input row: y[i, :] = x[i, :] W^T, bit for bit the same whether row i is
 * computed alone, in a batch of 3 or of 3000, on any rank.
 *
 * Why not OpenBLAS here: sgemm picks micro-kernels and blockings by the number of
 * rows, so a row's result changes in the last bits with the batch around it
 * (measured: 496 of 703 rows differ between M=1 and M=1..37 batches). Routed
 * experts see different batches depending on expert placement and replicas, and
 * the distributed answer must equal the single-process one exactly, so the
 * routed experts use this kernel. The dot products use 8 partial sums per
 * output (k mod 8) reduced in a fixed tree; the build disables FP contraction,
 * so SSE and AVX machines agree too. */
#ifndef SPEX_GEMM_ROWS_H
#define SPEX_GEMM_ROWS_H

/* y[n, out] = x[n, in] * W[out, in]^T, row-independent (see above). */
void gemm_rows(const float *x, const float *w, float *y, int n, int out, int in);

#endif
