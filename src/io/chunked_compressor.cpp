#include "io/chunked_compressor.hpp"
