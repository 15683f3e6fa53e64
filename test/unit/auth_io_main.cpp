// SPDX-License-Identifier: Apache-2.0
#define BOOST_TEST_MODULE plexus_auth_io
#include <boost/test/unit_test.hpp>
