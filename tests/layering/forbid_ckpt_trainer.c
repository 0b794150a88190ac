/* Must not compile: "trainer/model.h" is outside what rn_ckpt may include (tests/layering/CMakeLists.txt). */
#include "checkpoints/ckpt.h"
#include "trainer/model.h"
