/* Must not compile: "trainer/model.h" is outside what rn_data may include (tests/layering/CMakeLists.txt). */
#include "data/loader.h"
#include "trainer/model.h"
