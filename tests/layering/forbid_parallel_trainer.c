/* Must not compile: "trainer/model.h" is outside what rn_parallel may include (tests/layering/CMakeLists.txt). */
#include "parallel/grid.h"
#include "trainer/model.h"
