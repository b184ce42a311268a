package loadtest

// StatusErr exposes statusErr to the tests of package loadtest_test.
var StatusErr = statusErr
