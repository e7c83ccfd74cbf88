#pragma once
// The system volume as the reference provisions it (spec §2.1): a fixed-size ext4 image
// (0% reserved blocks), <image_dir>/<instance id>.img, attached to a loop device and mounted
// at the host mount point, so everything in it survives container and carsync restarts.
//
// Blocking and root-only (loop devices, mount(2)): the runtime runs these on its I/O pool,
// one call at a time per instance. The control directory inside the volume is
// io::ControlFiles::provision()'s job, run after provision_image_volume.
#include "carsync/config.hpp"
#include "core/error.hpp"

#include <filesystem>
#include <string>
#include <string_view>

namespace carsync::io {

struct ImageVolume {
  std::filesystem::path image;        // <image_dir>/<id>.img
  std::filesystem::path mount_point;  // canonical, as /proc/self/mountinfo shows it
  std::string loop_device;            // "/dev/loopN"
  bool image_created = false;         // this call created and formatted the image
  bool mounted_now = false;           // this call mounted it (it was not mounted there before)
};

// <image_dir>/<instance_id>.img
std::filesystem::path image_path(const SystemVolumeImage& cfg, std::string_view instance_id);

// Makes `mount_point` the mount of the instance's image, reusing whatever already exists:
// - the image: created if missing (allocated to cfg.size_bytes, formatted with
//   `mkfs.ext4 -F -q -m 0 -E root_owner=0:0`); an existing one is used as it is (never
//   resized or reformatted);
// - the loop device: one already attached to the image (same file, offset 0), else a free
//   one attached without autoclear;
// - the mount: kept when it is already the mount at `mount_point` (created if missing),
//   else mounted (ext4, nosuid,nodev,noexec).
// lost+found is removed only when both the image and the mount are new.
// A mount point that is already another mount is refused. Any failure is
// errc::system_volume_unavailable naming the step and errno, and undoes what this call did
// (unmounts what it mounted, detaches a loop it attached, removes an image it created).
Result<ImageVolume> provision_image_volume(const SystemVolumeImage& cfg, std::string_view instance_id,
                                           const std::filesystem::path& mount_point);

// Unmounts `mount_point` if it is a mount of the instance's image, and detaches every loop
// device attached to the image (a loop still in use elsewhere, e.g. by a container's copy of
// the mount, is detached by the kernel when its last user goes). The image file and its
// contents stay. Nothing to release (no image, nothing attached) is success.
Result<void> release_image_volume(const SystemVolumeImage& cfg, std::string_view instance_id,
                                  const std::filesystem::path& mount_point);

}  // namespace carsync::io
