package snapshot

// For the tests of package snapshot_test.
var AssertNoMountsUnder = assertNoMountsUnder
