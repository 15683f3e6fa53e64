// SPDX-License-Identifier: Apache-2.0
#define BOOST_TEST_MODULE plexus_integration
#include <boost/test/unit_test.hpp>
