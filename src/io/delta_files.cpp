#include "io/delta_files.hpp"
