/* Must not compile: "parallel/comm.h" is outside what rn_common may include (tests/layering/CMakeLists.txt). */
#include "common/check.h"
#include "parallel/comm.h"
