/* Must not compile: <mpi.h> is outside what rn_kernels may include (tests/layering/CMakeLists.txt). */
#include "trainer/kernels/matmul.h"
#include <mpi.h>
