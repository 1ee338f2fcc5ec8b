// Package dataset reads the reference data set (the UCI handwritten digits), splits it
// deterministically, and reads and writes the validation fixtures the quality gate runs on.
package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
)

// Digits data set shape: an 8x8 image of pixel counts, each 0..16, and a class 0..9.
const (
	DigitsFeatures = 64
	DigitsClasses  = 10
	DigitsMaxPixel = 16
)

// Sample is one labelled example: a class (Label) for classification, a value (Target) for
// regression. ID, when set, names the sample in reports (e.g. a row id of the source data).
type Sample struct {
	ID       string    `json:"id,omitempty"`
	Features []float64 `json:"features"`
	Label    int       `json:"label"`
	Target   float64   `json:"target"`
}

// LoadDigitsCSV reads the gzip-compressed digits CSV (64 features, label last, no header).
func LoadDigitsCSV(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open digits data %s: %w", path, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read digits data %s: not gzip: %w", path, err)
	}
	defer zr.Close()
	samples, err := parseDigitsCSV(zr)
	if err != nil {
		return nil, fmt.Errorf("parse digits data %s: %w", path, err)
	}
	return samples, nil
}

func parseDigitsCSV(r io.Reader) ([]Sample, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = DigitsFeatures + 1
	cr.ReuseRecord = true
	var samples []Sample
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		s := Sample{Features: make([]float64, DigitsFeatures)}
		for i := 0; i < DigitsFeatures; i++ {
			v, err := strconv.ParseFloat(rec[i], 64)
			if err != nil || v < 0 || v > DigitsMaxPixel {
				return nil, fmt.Errorf("line %d, column %d: pixel %q is not a number in 0..%d", line, i+1, rec[i], DigitsMaxPixel)
			}
			s.Features[i] = v
		}
		label, err := strconv.Atoi(rec[DigitsFeatures])
		if err != nil || label < 0 || label >= DigitsClasses {
			return nil, fmt.Errorf("line %d: label %q is not a class 0..%d", line, rec[DigitsFeatures], DigitsClasses-1)
		}
		s.Label = label
		samples = append(samples, s)
	}
	if len(samples) == 0 {
		return nil, errors.New("no rows")
	}
	return samples, nil
}

// Split shuffles the samples with a PCG generator seeded by seed and returns the first
// validationCount as the held-out validation set and the rest for training. The same seed
// gives the same split on every machine.
func Split(samples []Sample, seed uint64, validationCount int) (train, validation []Sample, err error) {
	if validationCount <= 0 || validationCount >= len(samples) {
		return nil, nil, fmt.Errorf("validation count %d must be between 1 and %d", validationCount, len(samples)-1)
	}
	order := rand.New(rand.NewPCG(seed, seed)).Perm(len(samples))
	validation = make([]Sample, 0, validationCount)
	train = make([]Sample, 0, len(samples)-validationCount)
	for i, idx := range order {
		if i < validationCount {
			validation = append(validation, samples[idx])
		} else {
			train = append(train, samples[idx])
		}
	}
	return train, validation, nil
}
