package examples

import (
	"bufio"
	"compress/gzip"
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

// Diabetes data set shape: ten baseline measurements of a patient and, as the target, a
// measure of disease progression a year later.
const (
	DiabetesFeatures = 10
	// DiabetesValidationSamples is the held-out share: 110 of 442 rows, about 25%.
	DiabetesValidationSamples = 110
	// diabetesRidge is the ridge penalty on the standardised coefficients. The serum
	// measurements s1..s4 are strongly collinear; against a Gram matrix with diagonal ~330 this
	// barely moves the fit but keeps it well conditioned.
	diabetesRidge      = 1.0
	diabetesDataFile   = "diabetes/diabetes_data_raw.csv.gz"
	diabetesTargetFile = "diabetes/diabetes_target.csv.gz"
)

// diabetesFeatureNames are scikit-learn's names for the columns, in order.
var diabetesFeatureNames = []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}

// RegressionReport is how the diabetes model did on its validation set.
type RegressionReport struct {
	TrainSamples, ValidationSamples int
	MAE, RMSE, R2                   float64
	// Predictions are the Go model's outputs for the validation samples, in fixture order.
	Predictions []float64
}

func buildDiabetes(dataDir string) (*RegressionReport, map[string][]byte, error) {
	samples, err := loadDiabetes(filepath.Join(dataDir, filepath.FromSlash(diabetesDataFile)),
		filepath.Join(dataDir, filepath.FromSlash(diabetesTargetFile)))
	if err != nil {
		return nil, nil, err
	}
	train, validation, err := dataset.Split(samples, Seed, DiabetesValidationSamples)
	if err != nil {
		return nil, nil, fmt.Errorf("split diabetes data: %w", err)
	}
	model, err := fitDiabetes(train)
	if err != nil {
		return nil, nil, err
	}
	report := evaluateDiabetes(model, validation)
	report.TrainSamples = len(train)

	fixture := &dataset.Fixture{
		Dataset:  "efron-diabetes",
		Source:   "data/" + diabetesDataFile + " and data/" + diabetesTargetFile + " (" + debianSource + "; diabetes data of Efron, Hastie, Johnstone and Tibshirani, 2004)",
		License:  "BSD-3-Clause, Scikit-Learn Developers; see data/diabetes/README.md",
		Seed:     Seed,
		Task:     dataset.TaskRegression,
		Features: DiabetesFeatures,
		Samples:  validation,
	}
	fixtureBytes, err := fixture.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("render diabetes validation fixture: %w", err)
	}
	modelBytes, err := exportDiabetes(model, report)
	if err != nil {
		return nil, nil, err
	}
	return report, map[string][]byte{DiabetesFixturePath: fixtureBytes, DiabetesModelPath: modelBytes}, nil
}

// linearModel is intercept + Σ coef·standardised feature.
type linearModel struct {
	scaler    standardiser
	coef      []float64
	intercept float64
}

func (m *linearModel) predict(raw []float64) float64 {
	y := m.intercept
	for i, z := range m.scaler.apply(raw) {
		y += float64(m.coef[i] * z)
	}
	return y
}

// fitDiabetes solves the ridge normal equations (ZᵀZ + λI)·coef = Zᵀ(y - ȳ) over standardised
// features Z. Centred features make the intercept ȳ exactly, and leave it unpenalised.
func fitDiabetes(train []dataset.Sample) (*linearModel, error) {
	x := make([][]float64, len(train))
	for i, s := range train {
		x[i] = s.Features
	}
	scaler := fitStandardiser(x)
	m := &linearModel{scaler: scaler}
	for _, s := range train {
		m.intercept += s.Target
	}
	m.intercept /= float64(len(train))
	gram := make([]float64, DiabetesFeatures*DiabetesFeatures)
	rhs := make([]float64, DiabetesFeatures)
	for i, row := range scaler.applyAll(x) {
		centred := train[i].Target - m.intercept
		for a, za := range row {
			rhs[a] += float64(za * centred)
			for b, zb := range row {
				gram[a*DiabetesFeatures+b] += float64(za * zb)
			}
		}
	}
	for a := 0; a < DiabetesFeatures; a++ {
		gram[a*DiabetesFeatures+a] += diabetesRidge
	}
	coef, err := solveSPD(gram, rhs)
	if err != nil {
		return nil, fmt.Errorf("fit diabetes model: %w", err)
	}
	m.coef = coef
	return m, nil
}

func evaluateDiabetes(model *linearModel, validation []dataset.Sample) *RegressionReport {
	report := &RegressionReport{ValidationSamples: len(validation)}
	targets := make([]float64, len(validation))
	for i, s := range validation {
		targets[i] = s.Target
		report.Predictions = append(report.Predictions, model.predict(s.Features))
	}
	m := (&gate.Evaluation{Task: dataset.TaskRegression, Samples: len(targets), Values: report.Predictions, Targets: targets}).Metrics()
	report.MAE, report.RMSE, report.R2 = m.MAE, m.RMSE, m.R2
	return report
}

// exportDiabetes writes the model with the standardisation folded into the weights, so the
// ONNX model takes the measurements as they are in the data: w = coef·scale and
// b = intercept - Σ mean·w.
func exportDiabetes(model *linearModel, report *RegressionReport) ([]byte, error) {
	weights := make([]float64, DiabetesFeatures)
	bias := model.intercept
	for i, c := range model.coef {
		weights[i] = float64(c * model.scaler.scale[i])
		bias -= float64(model.scaler.mean[i] * weights[i])
	}
	desc := mlp.Description{Name: "diabetes", Doc: "Ridge linear regression for the diabetes data of Efron et al. (2004): input the 10 raw " +
		"baseline measurements (" + strings.Join(diabetesFeatureNames, ", ") + "; sex coded 1 or 2), output the predicted disease progression one year later."}
	props := map[string]string{
		"dataset":         "efron-diabetes",
		"seed":            strconv.Itoa(Seed),
		"features":        strings.Join(diabetesFeatureNames, ","),
		"validation_mae":  strconv.FormatFloat(report.MAE, 'f', 4, 64),
		"validation_rmse": strconv.FormatFloat(report.RMSE, 'f', 4, 64),
		"validation_r2":   strconv.FormatFloat(report.R2, 'f', 4, 64),
	}
	out, err := mlp.ExportLinearONNX(desc, weights, bias, ProducerVersion, props)
	if err != nil {
		return nil, fmt.Errorf("export diabetes model: %w", err)
	}
	return out, nil
}

// loadDiabetes reads scikit-learn's raw (unscaled) diabetes data, ten space-separated values
// per line, and its targets, one per line. Sample ids are the 0-based data row, as
// scikit-learn numbers them.
func loadDiabetes(dataPath, targetPath string) ([]dataset.Sample, error) {
	rows, err := readGzipLines(dataPath, "diabetes data")
	if err != nil {
		return nil, err
	}
	targets, err := readGzipLines(targetPath, "diabetes targets")
	if err != nil {
		return nil, err
	}
	if len(rows) != len(targets) {
		return nil, fmt.Errorf("diabetes data %s has %d rows but %s has %d targets", dataPath, len(rows), targetPath, len(targets))
	}
	samples := make([]dataset.Sample, len(rows))
	for i := range rows {
		s, err := diabetesRow(i, rows[i], targets[i])
		if err != nil {
			return nil, fmt.Errorf("parse diabetes data %s: %w", dataPath, err)
		}
		samples[i] = s
	}
	return samples, nil
}

func diabetesRow(index int, row, target string) (dataset.Sample, error) {
	fields := strings.Fields(row)
	if len(fields) != DiabetesFeatures {
		return dataset.Sample{}, fmt.Errorf("line %d has %d values, want %d", index+1, len(fields), DiabetesFeatures)
	}
	s := dataset.Sample{ID: "diabetes-row-" + strconv.Itoa(index), Features: make([]float64, DiabetesFeatures)}
	for i, f := range fields {
		v, err := parseFinite(f)
		if err != nil {
			return dataset.Sample{}, fmt.Errorf("line %d, column %d: %w", index+1, i+1, err)
		}
		s.Features[i] = v
	}
	y, err := parseFinite(target)
	if err != nil {
		return dataset.Sample{}, fmt.Errorf("target of line %d: %w", index+1, err)
	}
	s.Target = y
	return s, nil
}

// readGzipLines returns the non-blank lines of a gzip-compressed text file.
func readGzipLines(path, what string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", what, path, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: not gzip: %w", what, path, err)
	}
	defer zr.Close()
	lines, err := nonBlankLines(zr)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("read %s %s: no rows", what, path)
	}
	return lines, nil
}

func nonBlankLines(r io.Reader) ([]string, error) {
	var lines []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			lines = append(lines, line)
		}
	}
	return lines, sc.Err()
}
