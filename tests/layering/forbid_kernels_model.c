/* Must not compile: "trainer/model.h" is outside what rn_kernels may include (tests/layering/CMakeLists.txt). */
#include "trainer/kernels/matmul.h"
#include "trainer/model.h"
