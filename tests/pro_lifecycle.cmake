# SPDX-License-Identifier: LGPL-3.0-or-later
# Graceful stop through Pro's reliable fetch (after pro.cmake, which defines
# the helper): a requeued job whose handler still finishes runs once.
if(COMMAND _dray_pro_test)
  _dray_pro_test(test_pro_lifecycle 120 module)
endif()
