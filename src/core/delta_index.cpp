#include "core/delta_index.hpp"
