// SPDX-License-Identifier: Apache-2.0
#define BOOST_TEST_MODULE plexus_broker_core
#include <boost/test/unit_test.hpp>
