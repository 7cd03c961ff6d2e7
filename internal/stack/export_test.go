package stack

// BuildFrom lets the integration tests build recipes of their own.
var BuildFrom = buildFrom
