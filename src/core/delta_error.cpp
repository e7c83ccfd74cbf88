#include "core/delta_error.hpp"
