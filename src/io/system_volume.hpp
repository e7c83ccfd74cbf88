#pragma once
// The system volume as a loop-mounted ext4 image (spec §2.1). Work in progress.
