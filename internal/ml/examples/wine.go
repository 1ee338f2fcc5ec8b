package examples

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/modelship/modelship/internal/gate"
	"github.com/modelship/modelship/internal/ml/dataset"
	"github.com/modelship/modelship/internal/ml/mlp"
)

// Wine data set shape: 13 chemical measurements of a wine and its cultivar, class 0..2.
const (
	WineFeatures = 13
	WineClasses  = 3
	// WineValidationSamples is the held-out share: 45 of 178 rows, about 25%.
	WineValidationSamples = 45
	wineDataFile          = "wine/wine_data.csv"
)

// wineFeatureNames are scikit-learn's names for the columns, in order.
var wineFeatureNames = []string{"alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium",
	"total_phenols", "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity",
	"hue", "od280/od315_of_diluted_wines", "proline"}

// wineConfig trains to 1.0 validation accuracy in well under a second; the data is small
// and, once standardised, close to linearly separable.
// A run with fewer epochs makes a different, weaker model: the "retrained candidate" the
// end-to-end run gates against the shipped one to show a prediction diff.
func wineConfig(epochs int) mlp.Config {
	if epochs <= 0 {
		epochs = 100
	}
	return mlp.Config{Hidden: 16, Epochs: epochs, BatchSize: 16, LearningRate: 0.02, Momentum: 0.9, Seed: Seed, InputScale: 1}
}

// ClassificationReport is how the wine model did on its validation set.
type ClassificationReport struct {
	TrainSamples, ValidationSamples int
	Accuracy                        float64
	Recall                          []float64 // per class
	MacroF1                         float64
	// Probabilities are the Go model's outputs for the validation samples, in fixture order.
	Probabilities [][]float64
}

// wineModel is the trained network, which reads standardised features.
type wineModel struct {
	scaler standardiser
	net    *mlp.Network
}

func (m *wineModel) predict(raw []float64) []float64 { return m.net.Predict(m.scaler.apply(raw)) }

func buildWine(dataDir string, epochs int) (*ClassificationReport, map[string][]byte, error) {
	samples, err := loadWine(filepath.Join(dataDir, filepath.FromSlash(wineDataFile)))
	if err != nil {
		return nil, nil, err
	}
	train, validation, err := dataset.Split(samples, Seed, WineValidationSamples)
	if err != nil {
		return nil, nil, fmt.Errorf("split wine data: %w", err)
	}
	model, err := trainWine(train, epochs)
	if err != nil {
		return nil, nil, err
	}
	report := evaluateWine(model, validation)
	report.TrainSamples = len(train)

	fixture := &dataset.Fixture{
		Dataset:  "uci-wine",
		Source:   "data/" + wineDataFile + " (" + debianSource + "; UCI Wine recognition data, Forina et al.)",
		License:  "BSD-3-Clause, Scikit-Learn Developers; see data/wine/README.md",
		Seed:     Seed,
		Task:     dataset.TaskClassification,
		Features: WineFeatures,
		Classes:  WineClasses,
		Samples:  validation,
	}
	fixtureBytes, err := fixture.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("render wine validation fixture: %w", err)
	}
	modelBytes, err := exportWine(model, report)
	if err != nil {
		return nil, nil, err
	}
	return report, map[string][]byte{WineFixturePath: fixtureBytes, WineModelPath: modelBytes}, nil
}

func trainWine(train []dataset.Sample, epochs int) (*wineModel, error) {
	x := make([][]float64, len(train))
	y := make([]int, len(train))
	for i, s := range train {
		x[i], y[i] = s.Features, s.Label
	}
	scaler := fitStandardiser(x)
	net, err := mlp.Train(wineConfig(epochs), scaler.applyAll(x), y, WineClasses)
	if err != nil {
		return nil, fmt.Errorf("train wine model: %w", err)
	}
	return &wineModel{scaler: scaler, net: net}, nil
}

func evaluateWine(model *wineModel, validation []dataset.Sample) *ClassificationReport {
	report := &ClassificationReport{ValidationSamples: len(validation)}
	// The gate's own metrics, so the numbers here are the ones a gate run reports.
	ev := &gate.Evaluation{Task: dataset.TaskClassification, Samples: len(validation), Confusion: make([][]int, WineClasses)}
	for c := range ev.Confusion {
		ev.Confusion[c] = make([]int, WineClasses)
	}
	for _, s := range validation {
		p := model.predict(s.Features)
		report.Probabilities = append(report.Probabilities, p)
		predicted := mlp.Argmax(p)
		ev.Confusion[s.Label][predicted]++
		if predicted == s.Label {
			ev.Correct++
		}
	}
	m := ev.Metrics()
	report.Accuracy, report.Recall, report.MacroF1 = m.Accuracy, m.PerClassRecall, m.MacroF1
	return report
}

// exportWine writes the network with the standardisation folded into its first layer, so
// the ONNX model takes the measurements as they are in the data.
func exportWine(model *wineModel, report *ClassificationReport) ([]byte, error) {
	desc := mlp.Description{Name: "wine", Doc: "Multi-layer perceptron for the UCI wine recognition data: input the 13 raw " +
		"chemical measurements (" + strings.Join(wineFeatureNames, ", ") + "), output the probabilities of cultivars 0..2."}
	props := map[string]string{
		"dataset":             "uci-wine",
		"seed":                strconv.Itoa(Seed),
		"labels":              "class_0,class_1,class_2",
		"features":            strings.Join(wineFeatureNames, ","),
		"validation_accuracy": strconv.FormatFloat(report.Accuracy, 'f', 4, 64),
		"validation_macro_f1": strconv.FormatFloat(report.MacroF1, 'f', 4, 64),
	}
	out, err := foldStandardiser(model.net, model.scaler).ExportDescribedONNX(desc, ProducerVersion, props)
	if err != nil {
		return nil, fmt.Errorf("export wine model: %w", err)
	}
	return out, nil
}

// foldStandardiser returns a network over raw features that computes what net computes over
// standardised ones: h = (x-mean)·scale·W1 + B1 = x·(scale·W1) + (B1 - Σ mean·scale·W1).
func foldStandardiser(net *mlp.Network, s standardiser) *mlp.Network {
	folded := *net
	folded.InputScale = 1
	folded.W1 = make([]float64, len(net.W1))
	folded.B1 = append([]float64(nil), net.B1...)
	for i := 0; i < net.Inputs; i++ {
		for j := 0; j < net.Hidden; j++ {
			w := float64(net.W1[i*net.Hidden+j] * net.InputScale * s.scale[i])
			folded.W1[i*net.Hidden+j] = w
			folded.B1[j] -= float64(s.mean[i] * w)
		}
	}
	return &folded
}

// loadWine reads scikit-learn's wine_data.csv: a header "rows,features,class names...", then
// 13 measurements and the class per row. Sample ids are the 0-based data row, as scikit-learn
// numbers them.
func loadWine(path string) ([]dataset.Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open wine data %s: %w", path, err)
	}
	defer f.Close()
	samples, err := parseWine(f)
	if err != nil {
		return nil, fmt.Errorf("parse wine data %s: %w", path, err)
	}
	return samples, nil
}

func parseWine(r io.Reader) ([]dataset.Sample, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // the header is shorter than the rows
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	rows, err := wineHeader(header)
	if err != nil {
		return nil, err
	}
	var samples []dataset.Sample
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		s, err := wineRow(len(samples), rec)
		if err != nil {
			return nil, err
		}
		samples = append(samples, s)
	}
	if len(samples) != rows {
		return nil, fmt.Errorf("the header announces %d rows, the file has %d", rows, len(samples))
	}
	return samples, nil
}

func wineHeader(header []string) (rows int, err error) {
	if len(header) != 2+WineClasses {
		return 0, fmt.Errorf("header %q: want rows, features and %d class names", strings.Join(header, ","), WineClasses)
	}
	rows, err = strconv.Atoi(header[0])
	if err != nil || rows <= 0 {
		return 0, fmt.Errorf("header: row count %q is not a positive number", header[0])
	}
	if header[1] != strconv.Itoa(WineFeatures) {
		return 0, fmt.Errorf("header: %s features, want %d", header[1], WineFeatures)
	}
	return rows, nil
}

func wineRow(index int, rec []string) (dataset.Sample, error) {
	line := index + 2 // 1-based, after the header
	if len(rec) != WineFeatures+1 {
		return dataset.Sample{}, fmt.Errorf("line %d has %d fields, want %d", line, len(rec), WineFeatures+1)
	}
	s := dataset.Sample{ID: "wine-row-" + strconv.Itoa(index), Features: make([]float64, WineFeatures)}
	for i := 0; i < WineFeatures; i++ {
		v, err := parseFinite(rec[i])
		if err != nil {
			return dataset.Sample{}, fmt.Errorf("line %d, column %d: %w", line, i+1, err)
		}
		s.Features[i] = v
	}
	label, err := strconv.Atoi(rec[WineFeatures])
	if err != nil || label < 0 || label >= WineClasses {
		return dataset.Sample{}, fmt.Errorf("line %d: class %q is not 0..%d", line, rec[WineFeatures], WineClasses-1)
	}
	s.Label = label
	return s, nil
}
