package main

import (
	"fmt"
	"strconv"
	"time"
)

// optInt is an int flag that knows whether it was given, because the API
// tells "not given" (use the code's or server's default) from 0.
type optInt struct {
	v   int
	set bool
}

func (o *optInt) String() string {
	if !o.set {
		return ""
	}
	return strconv.Itoa(o.v)
}

func (o *optInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	o.v, o.set = n, true
	return nil
}

func (o *optInt) Type() string { return "int" }

// ptr is the value for an API field where nil means "not given".
func (o *optInt) ptr() *int {
	if !o.set {
		return nil
	}
	v := o.v
	return &v
}

// seconds is a flag in whole seconds, as the API counts them; it also takes
// a Go duration such as 90s, 5m or 1h30m, which is easier to get right.
type seconds struct{ optInt }

func (s *seconds) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil {
			return fmt.Errorf("%q is neither seconds nor a duration such as 90s or 5m", v)
		}
		if d%time.Second != 0 {
			return fmt.Errorf("%q is not a whole number of seconds", v)
		}
		n = int(d / time.Second)
	}
	if n < 0 {
		return fmt.Errorf("%q is negative", v)
	}
	s.v, s.set = n, true
	return nil
}

func (s *seconds) Type() string { return "seconds" }
