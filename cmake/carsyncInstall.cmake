# `cmake --install BUILD --prefix P` installs the library, its public headers, both programs
# and a CMake package, so that an embedder writes only
#   find_package(carsync CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE carsync::carsync)
#
# carsync::carsync is the only target embedders name. The layer libraries behind it are
# static, so they are installed and exported too (as carsync::carsync_core, ...): a static
# library's dependencies must be linked by whoever links it. Their internal headers (src/)
# are not installed and not in any installed target's include path.
include(CMakePackageConfigHelpers)

set(CARSYNC_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/carsync)

install(TARGETS carsync_core carsync_io carsync_backend carsync_asio carsync_net carsync_runtime
                carsync_api
        EXPORT carsyncTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# Exactly the public API: include/carsync/*.hpp.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/carsync
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp")
install(TARGETS carsyncd carsync RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(EXPORT carsyncTargets
        NAMESPACE carsync::
        FILE carsyncTargets.cmake
        DESTINATION ${CARSYNC_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/carsyncConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/carsyncConfig.cmake
                              INSTALL_DESTINATION ${CARSYNC_CMAKE_DIR})
# 0.x: the API may change between minor versions, so a request for 0.1 accepts 0.1.* only.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/carsyncConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/carsyncConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/carsyncConfigVersion.cmake
        DESTINATION ${CARSYNC_CMAKE_DIR})
