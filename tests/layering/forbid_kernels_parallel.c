/* Must not compile: "parallel/comm.h" is outside what rn_kernels may include (tests/layering/CMakeLists.txt). */
#include "trainer/kernels/matmul.h"
#include "parallel/comm.h"
