/* Must not compile: <mpi.h> is outside what rn_data may include (tests/layering/CMakeLists.txt). */
#include "data/loader.h"
#include <mpi.h>
