package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteRepeatability writes, for each target the runs measured, its ratio
// in every run with the median, the spread and how many runs met it. On a
// shared machine one run's ratio can move by a factor of two; a claim
// rests on the median and on how often the target held.
func WriteRepeatability(w io.Writer, runs []*Results) error {
	var names []string
	ratios := map[string][]float64{}
	met := map[string]int{}
	bounds := map[string]string{}
	for _, r := range runs {
		for _, t := range r.Targets() {
			if _, ok := ratios[t.Name]; !ok {
				names = append(names, t.Name)
				bounds[t.Name] = t.Op + " " + trimFloat(t.Bound)
			}
			ratios[t.Name] = append(ratios[t.Name], t.Ratio)
			if t.Met {
				met[t.Name]++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Repeatability: %d runs, one after another.\n\n", len(runs))
	b.WriteString("| target | ratio in each run | median | min - max | target | met in |\n|---|---|---|---|---|---|\n")
	for _, n := range names {
		rs := ratios[n]
		each := make([]string, len(rs))
		for i, r := range rs {
			each[i] = fmt.Sprintf("%.2f", r)
		}
		sorted := slices.Sorted(slices.Values(rs))
		fmt.Fprintf(&b, "| %s | %s | **%.2f** | %.2f - %.2f | %s | %d of %d |\n", n, strings.Join(each, ", "),
			median(sorted), sorted[0], sorted[len(sorted)-1], bounds[n], met[n], len(rs))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// median of sorted values: the middle one, or the mean of the two middle
// ones.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func trimFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}
