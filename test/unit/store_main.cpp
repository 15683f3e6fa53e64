// SPDX-License-Identifier: Apache-2.0
#define BOOST_TEST_MODULE plexus_broker_store
#include <boost/test/unit_test.hpp>
