# SPDX-License-Identifier: Apache-2.0
# Install rules, the CMake package (find_package(plexus 0.2)), plexus.pc and
# the Debian packages (cpack, `make package`). Three components, one per
# package:
#   broker  plexus-broker, its systemd unit and /etc/plexus/broker.toml
#   tools   the `plexus` CLI
#   dev     headers, static libraries, the CMake package and plexus.pc
include(CMakePackageConfigHelpers)

# Libraries by what an application names: plexus::plexus, or the parts.
set(_plexus_libs plexus_wire plexus_metrics plexus_pool_core plexus_connector_core plexus_client
    plexus_observe plexus_broker_core plexus_broker_store plexus_broker plexus_runtime plexus_actors)
foreach(lib IN LISTS _plexus_libs)
  string(REGEX REPLACE "^plexus_" "" _export_name "${lib}")
  set_target_properties(${lib} PROPERTIES EXPORT_NAME ${_export_name})
endforeach()
set(PLEXUS_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/plexus")

install(TARGETS ${_plexus_libs} plexus_plexus EXPORT plexus-targets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT dev)
# The public headers: the framework's API and the protocol's floor under
# it (wire, topic, metrics), plus the generated version.hpp.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/framework/include/plexus"
                  "${PROJECT_SOURCE_DIR}/actors/include/plexus"
                  "${PROJECT_SOURCE_DIR}/brokers/protocol/include/plexus"
                  "${PROJECT_BINARY_DIR}/include/plexus"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT dev)
install(EXPORT plexus-targets NAMESPACE plexus:: FILE plexusTargets.cmake
        DESTINATION "${PLEXUS_CMAKE_DIR}" COMPONENT dev)
configure_package_config_file(cmake/plexusConfig.cmake.in
  "${PROJECT_BINARY_DIR}/plexusConfig.cmake" INSTALL_DESTINATION "${PLEXUS_CMAKE_DIR}")
# 0.x: a minor release may change the API, so 0.2 accepts 0.2.* only.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/plexusConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/plexusConfig.cmake"
              "${PROJECT_BINARY_DIR}/plexusConfigVersion.cmake"
              "${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake"
        DESTINATION "${PLEXUS_CMAKE_DIR}" COMPONENT dev)

# plexus.pc, relocatable: the prefix is found from the file's own place.
file(RELATIVE_PATH PLEXUS_PC_TO_PREFIX "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
string(REGEX REPLACE "/$" "" PLEXUS_PC_TO_PREFIX "${PLEXUS_PC_TO_PREFIX}")
configure_file(cmake/plexus.pc.in "${PROJECT_BINARY_DIR}/plexus.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/plexus.pc"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig" COMPONENT dev)

install(TARGETS plexus-broker RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT broker)
install(TARGETS plexus RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT tools)

# The broker as a service. The unit goes under the prefix (/usr/lib/systemd
# on Debian); the config goes to /etc/plexus when the prefix is /usr (the
# package), else to PREFIX/etc/plexus, so an install into a private prefix
# needs no root. The data dir /var/lib/plexus is systemd's StateDirectory.
set(_pkg "${PROJECT_SOURCE_DIR}/brokers/packaging")
install(FILES "${_pkg}/plexus-broker.service" DESTINATION "lib/systemd/system" COMPONENT broker)
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(_plexus_etc /etc/plexus)
  else()
    set(_plexus_etc \"\${CMAKE_INSTALL_PREFIX}/etc/plexus\")
  endif()
  file(INSTALL \"${_pkg}/broker.toml\" DESTINATION \"\${_plexus_etc}\") # DESTDIR is file()'s
" COMPONENT broker)

# Debian packages: `make package` (or cpack in a build tree).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME plexus)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR plexus)
set(CPACK_PACKAGE_CONTACT "plexus maintainers <plexus@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "serverless-style microservices on CAF and ZeroMQ")
# Installed with DESTDIR and prefix /usr, so the config lands in /etc.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL broker tools dev)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_BROKER_PACKAGE_NAME plexus-broker)
# First line: the synopsis; the rest: the long description.
set(CPACK_DEBIAN_BROKER_DESCRIPTION
  "plexus message broker, run by systemd as the plexus user
Topics with wildcards, queue groups with credit-based flow control, acks and
redelivery, dead letters, request/reply and failover between brokers.
Configure in /etc/plexus/broker.toml, then: systemctl restart plexus-broker.")
set(CPACK_DEBIAN_BROKER_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_BROKER_PACKAGE_CONTROL_EXTRA
  "${_pkg}/conffiles;${_pkg}/postinst;${_pkg}/prerm;${_pkg}/postrm")
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME plexus-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION
  "plexus command line: pub, sub, req, trace, graph, top
Talks to a plexus broker: publish and subscribe, call functions, follow
traces, draw the dependency graph and watch services live.")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libplexus-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "plexus microservice framework: headers, static libraries, CMake package
Build services on CAF and ZeroMQ against plexus with find_package(plexus 0.2)
and target_link_libraries(app PRIVATE plexus::plexus), or pkg-config plexus.")
# Static libraries: what they link must be there when the application links.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "libcaf-dev (>= 0.17), libzmq3-dev, cppzmq-dev, libmsgpack-cxx-dev, libboost-dev, libspdlog-dev, libcpp-httplib-dev, libsodium-dev, libtomlplusplus-dev, libpq-dev, tzdata")
include(CPack)
