#include "io/system_volume.hpp"
