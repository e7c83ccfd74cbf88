#include "core/delta_record.hpp"
