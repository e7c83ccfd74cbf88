// BlockingPool is header-only (templates); this TU keeps the header compiling on its own.
#include "runtime/blocking_pool.hpp"
