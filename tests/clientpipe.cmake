# Pipelines, exact bulk counts, no double writes, big integers and foreign jids.
dray_add_test(test_pipe SOURCES integration/test_pipe.c LABELS integration)
dray_add_test(test_bigjob SOURCES integration/test_bigjob.c LABELS integration)
