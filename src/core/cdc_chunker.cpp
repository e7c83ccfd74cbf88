#include "core/cdc_chunker.hpp"
