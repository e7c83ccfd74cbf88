#pragma once
// The benchmarks' shared ~200 MB dataset: the shapes an app volume holds, generated
// deterministically (same bytes on every machine) so figures from different runs compare.
//
//   text/dNN/note_NNNN.txt   2,000 prose files of 1-64 KiB
//   logs/service-NN.log      20 structured logs of 1-8 MiB
//   blobs/blob-N.bin         5 incompressible 10 MiB files
#include <filesystem>

namespace carsync::bench {

// Writes the dataset into `tree`, replacing whatever was there.
void generate_dataset(const std::filesystem::path& tree);

// Returns `data_dir`/tree, generating it first unless an earlier complete generation left
// its marker (an interrupted one is redone).
std::filesystem::path ensure_dataset(const std::filesystem::path& data_dir);
// Evicts `path` (a file, or every file below a directory) from the page cache: each file is
// flushed (fdatasync) and then posix_fadvise(DONTNEED)ed, so the next read comes from the
// disk. Needs no privilege, unlike /proc/sys/vm/drop_caches, and touches only these files.
void drop_cached(const std::filesystem::path& path);

}  // namespace carsync::bench
