/* float64 plain-C references for the elementwise kernels of activation.h. Tests only. */
#ifndef RN_ACTIVATION_REF_H
#define RN_ACTIVATION_REF_H

#include <stdint.h>

/* gelu, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
double ref_gelu(double x);
/* the same, literally as written (cancels in double below x ~ -3) */
double ref_gelu_tanh(double x);
double ref_gelu_grad(double x);
/* swish(z) = z sigmoid(z) */
double ref_swish(double z);
double ref_swish_grad(double z);

void ref_gelu_forward(double *dst, const double *src, int64_t n);
/* OVERWRITES dsrc = ddst * gelu'(src). */
void ref_gelu_backward(double *dsrc, const double *ddst, const double *src, int64_t n);
/* dst = swish(gate) * y */
void ref_swish_gate_forward(double *dst, const double *gate, const double *y, int64_t n);
/* OVERWRITES dgate, dy. */
void ref_swish_gate_backward(double *dgate, double *dy, const double *ddst,
			     const double *gate, const double *y, int64_t n);
/* x[r, :] += bias */
void ref_bias_add(double *x, const double *bias, int64_t rows, int64_t width);
/* OVERWRITES dbias = column sums of ddst. */
void ref_bias_backward(double *dbias, const double *ddst, int64_t rows, int64_t width);

#endif
