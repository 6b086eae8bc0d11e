# OpenCV package config for the GPU bundle (bench/gpu/bundle.sh copies it to
# deps/lib/<multiarch>/cmake/opencv4/). Debian's own OpenCVConfig.cmake imports every OpenCV module
# and fails when one of their files is missing; the bundle carries only core, imgproc and imgcodecs,
# so this file imports exactly those, with the same names (opencv_core, ...) and variables
# (OpenCV_VERSION, OpenCV_INCLUDE_DIRS, OpenCV_LIBS) as the real config.

set(_opencv_bundled_modules core imgproc imgcodecs)
# The bundle's prefix: <prefix>/lib/<multiarch>/cmake/opencv4/this file.
get_filename_component(_opencv_prefix "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
get_filename_component(_opencv_libdir "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
set(OpenCV_INCLUDE_DIRS "${_opencv_prefix}/include/opencv4")

# The version, from the bundled headers (no number to keep in step by hand).
file(STRINGS "${OpenCV_INCLUDE_DIRS}/opencv2/core/version.hpp" _opencv_version_lines
     REGEX "#define CV_VERSION_(MAJOR|MINOR|REVISION) +[0-9]+")
foreach(_part MAJOR MINOR REVISION)
  string(REGEX REPLACE ".*#define CV_VERSION_${_part} +([0-9]+).*" "\\1" OpenCV_VERSION_${_part}
         "${_opencv_version_lines}")
endforeach()
set(OpenCV_VERSION "${OpenCV_VERSION_MAJOR}.${OpenCV_VERSION_MINOR}.${OpenCV_VERSION_REVISION}")

# Requested modules must be among the bundled ones (no components requested: all of them).
set(OpenCV_LIBS "")
set(_opencv_requested ${OpenCV_FIND_COMPONENTS})
if(NOT _opencv_requested)
  set(_opencv_requested ${_opencv_bundled_modules})
endif()
foreach(_module ${_opencv_requested})
  string(REGEX REPLACE "^opencv_" "" _module "${_module}")
  if(NOT _module IN_LIST _opencv_bundled_modules)
    set(OpenCV_FOUND FALSE)
    set(OpenCV_NOT_FOUND_MESSAGE
        "the GPU bundle has OpenCV ${_opencv_bundled_modules} only, not '${_module}'; add it to "
        "bench/gpu/bundle.sh")
    return()
  endif()
  list(APPEND OpenCV_LIBS opencv_${_module})
endforeach()

# Each library is stored once, under its soname (libopencv_core.so.406), which is also what the
# dynamic loader looks for at run time.
set(_opencv_previous "")
foreach(_module ${_opencv_bundled_modules})
  file(GLOB _opencv_file "${_opencv_libdir}/libopencv_${_module}.so.*")
  if(NOT _opencv_file)
    set(OpenCV_FOUND FALSE)
    set(OpenCV_NOT_FOUND_MESSAGE "libopencv_${_module}.so.* is missing from ${_opencv_libdir}; "
                                 "run bench/gpu/bundle.sh again")
    return()
  endif()
  if(NOT TARGET opencv_${_module})
    add_library(opencv_${_module} SHARED IMPORTED)
    set_target_properties(opencv_${_module} PROPERTIES
      IMPORTED_LOCATION "${_opencv_file}"
      INTERFACE_INCLUDE_DIRECTORIES "${OpenCV_INCLUDE_DIRS}"
      INTERFACE_LINK_LIBRARIES "${_opencv_previous}")
  endif()
  # imgproc links core, imgcodecs links imgproc and core.
  list(APPEND _opencv_previous opencv_${_module})
endforeach()

set(OpenCV_FOUND TRUE)
unset(_opencv_file)
unset(_opencv_previous)
unset(_opencv_requested)
unset(_opencv_version_lines)
