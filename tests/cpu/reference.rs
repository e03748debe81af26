//! The CPU reference checked against things that do not depend on it: the seed's example worked out by
//! hand inside the test, and central finite differences of the loss.

use backprop::cpu;
use backprop::model::{Activation, Loss, MlpSpec, Params};
use backprop::worked_example;
use ndarray::array;

use super::common;

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[test]
fn reference_matches_the_worked_example_computed_by_hand() {
    // The seed's network, written out scalar by scalar.
    let (x1, x2, y, lr) = (0.5, 0.3, 0.8, 0.1);
    let w1 = [[0.5, 0.3], [0.2, 0.4]]; // w1[i][j]: input i -> hidden j
    let b1 = [0.1, 0.2];
    let w2 = [0.6, 0.7]; // hidden j -> output
    let b2 = 0.3;

    let h_in = [x1 * w1[0][0] + x2 * w1[1][0] + b1[0], x1 * w1[0][1] + x2 * w1[1][1] + b1[1]];
    let h = [sigmoid(h_in[0]), sigmoid(h_in[1])];
    let o_in = h[0] * w2[0] + h[1] * w2[1] + b2;
    let o = sigmoid(o_in);
    let loss = (y - o) * (y - o);
    let d_o = 2.0 * (o - y) * o * (1.0 - o);
    let d_h = [d_o * w2[0] * h[0] * (1.0 - h[0]), d_o * w2[1] * h[1] * (1.0 - h[1])];
    let g_w2 = [d_o * h[0], d_o * h[1]];
    let g_w1 = [[d_h[0] * x1, d_h[1] * x1], [d_h[0] * x2, d_h[1] * x2]];

    let (spec, mut p) = worked_example::network().unwrap();
    let (x, yy) = worked_example::batch();
    let t = cpu::sgd_step(&spec, &mut p, x.view(), yy.view(), lr).unwrap();

    let close = |name: &str, got: f64, want: f64| {
        assert!((got - want).abs() <= 1e-12, "{name}: reference {got} vs hand {want}");
    };
    for j in 0..2 {
        close("hidden_input", t.pre[0][[0, j]], h_in[j]);
        close("hidden_output", t.post[0][[0, j]], h[j]);
        close("delta_hidden", t.delta[0][[0, j]], d_h[j]);
        close("grad_b1", t.grads.biases[0][j], d_h[j]);
        close("grad_w2", t.grads.weights[1][[j, 0]], g_w2[j]);
        close("w2_updated", p.weights[1][[j, 0]], w2[j] - lr * g_w2[j]);
        close("b1_updated", p.biases[0][j], b1[j] - lr * d_h[j]);
        for i in 0..2 {
            close("grad_w1", t.grads.weights[0][[i, j]], g_w1[i][j]);
            close("w1_updated", p.weights[0][[i, j]], w1[i][j] - lr * g_w1[i][j]);
        }
    }
    close("output_input", t.pre[1][[0, 0]], o_in);
    close("output", t.post[1][[0, 0]], o);
    close("loss", t.loss, loss);
    close("delta_output", t.delta[1][[0, 0]], d_o);
    close("grad_b2", t.grads.biases[1][0], d_o);
    close("b2_updated", p.biases[1][0], b2 - lr * d_o);

    // The seed's first line is already off: 0.5*0.5 + 0.3*0.2 + 0.1 is 0.41, not the printed 0.31.
    let rows = worked_example::run(None).unwrap();
    let hidden = rows.iter().find(|r| r.name == "hidden_input").unwrap();
    assert_eq!(hidden.seed_agrees(), Some(false));
    assert!(rows.iter().all(|r| r.gpu_f32.is_none()));
    assert_eq!(rows.len(), 15);
}

#[test]
fn seed_agreement_uses_the_seeds_rounding() {
    let printed = worked_example::seed_value("output").unwrap();
    assert!(printed.agrees_with(&worked_example::Tensor::Scalar(0.6704)));
    assert!(printed.agrees_with(&worked_example::Tensor::Scalar(0.674999)));
    assert!(!printed.agrees_with(&worked_example::Tensor::Scalar(0.6751)));
    assert!(worked_example::seed_value("grad_w1").is_none());
}

/// The loss as a function of one parameter, evaluated in f64.
fn loss_at(spec: &MlpSpec, p: &Params<f64>, x: &ndarray::Array2<f64>, y: &ndarray::Array2<f64>) -> f64 {
    cpu::loss(spec, p, x.view(), y.view()).unwrap()
}

#[test]
fn analytic_gradients_match_central_finite_differences() {
    let mut rng = common::rng(7);
    let shapes: [(&[usize], usize); 5] =
        [(&[1, 1], 1), (&[3, 2, 1], 1), (&[4, 5, 3], 2), (&[2, 7, 1, 3], 5), (&[5, 3, 4, 2, 6], 3)];
    let mut checked = 0;
    for act in Activation::ALL {
        for (sizes, batch) in shapes {
            let spec = MlpSpec::uniform(sizes.to_vec(), act, Loss::Mse).unwrap();
            let mut p = Params::<f64>::zeros(&spec);
            for l in 0..spec.layers() {
                let (i, o) = spec.layer_shape(l);
                p.weights[l] = common::random(&mut rng, i, o, 1.0);
                p.biases[l] = common::random(&mut rng, 1, o, 0.5).row(0).to_owned();
            }
            let x = common::random(&mut rng, batch, sizes[0], 1.0);
            let y = common::random(&mut rng, batch, *sizes.last().unwrap(), 1.0);
            let t = cpu::forward_backward(&spec, &p, x.view(), y.view()).unwrap();
            let h = 1e-6;
            let fd_check = |name: String, analytic: f64, numeric: f64| {
                let tol = 1e-7 + 1e-5 * numeric.abs();
                assert!(
                    (analytic - numeric).abs() <= tol,
                    "{act}: {name}: analytic {analytic:e} vs numeric {numeric:e}"
                );
            };
            for l in 0..spec.layers() {
                let (i, o) = spec.layer_shape(l);
                for r in 0..i {
                    for c in 0..o {
                        let mut plus = p.clone();
                        plus.weights[l][[r, c]] += h;
                        let mut minus = p.clone();
                        minus.weights[l][[r, c]] -= h;
                        let num = (loss_at(&spec, &plus, &x, &y) - loss_at(&spec, &minus, &x, &y)) / (2.0 * h);
                        fd_check(format!("{sizes:?} dW{l}[{r}][{c}]"), t.grads.weights[l][[r, c]], num);
                        checked += 1;
                    }
                }
                for c in 0..o {
                    let mut plus = p.clone();
                    plus.biases[l][c] += h;
                    let mut minus = p.clone();
                    minus.biases[l][c] -= h;
                    let num = (loss_at(&spec, &plus, &x, &y) - loss_at(&spec, &minus, &x, &y)) / (2.0 * h);
                    fd_check(format!("{sizes:?} db{l}[{c}]"), t.grads.biases[l][c], num);
                    checked += 1;
                }
            }
            // The input gradient too.
            let dx = t.input_grad.as_ref().expect("the reference computes dX");
            for r in 0..batch {
                for c in 0..sizes[0] {
                    let mut xp = x.clone();
                    xp[[r, c]] += h;
                    let mut xm = x.clone();
                    xm[[r, c]] -= h;
                    let num = (loss_at(&spec, &p, &xp, &y) - loss_at(&spec, &p, &xm, &y)) / (2.0 * h);
                    fd_check(format!("{sizes:?} dX[{r}][{c}]"), dx[[r, c]], num);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} derivatives checked");
}

#[test]
fn reference_runs_in_f32_and_f64_alike() {
    let spec = MlpSpec::uniform(vec![3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
    let p32 = Params::init(&spec, 3);
    let p64 = p32.to_f64();
    let x = array![[0.1f64, -0.2, 0.3], [0.5, 0.25, -1.0]];
    let y = array![[0.0f64, 1.0], [1.0, 0.0]];
    let t64 = cpu::forward_backward(&spec, &p64, x.view(), y.view()).unwrap();
    let t32 = cpu::forward_backward(&spec, &p32, x.mapv(|v| v as f32).view(), y.mapv(|v| v as f32).view()).unwrap();
    assert!((t64.loss - t32.loss as f64).abs() < 1e-6);
    for l in 0..2 {
        for (a, b) in t64.grads.weights[l].iter().zip(&t32.grads.weights[l]) {
            assert!((a - *b as f64).abs() < 1e-6);
        }
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let spec = MlpSpec::uniform(vec![3, 2], Activation::Sigmoid, Loss::Mse).unwrap();
    let p = Params::<f64>::zeros(&spec);
    let x = ndarray::Array2::<f64>::zeros((4, 5));
    let y = ndarray::Array2::<f64>::zeros((4, 2));
    let e = cpu::forward_backward(&spec, &p, x.view(), y.view()).unwrap_err();
    assert!(matches!(e, backprop::Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("input columns"), "{e}");
    let x = ndarray::Array2::<f64>::zeros((4, 3));
    let y = ndarray::Array2::<f64>::zeros((3, 2));
    assert!(cpu::forward_backward(&spec, &p, x.view(), y.view()).is_err());
    assert!(MlpSpec::uniform(vec![3, 0, 2], Activation::Relu, Loss::Mse).is_err());
    assert!(MlpSpec::uniform(vec![3], Activation::Relu, Loss::Mse).is_err());
    assert!(MlpSpec::new(vec![3, 2], vec![], Loss::Mse).is_err());
    let wrong = Params::<f64>::zeros(&MlpSpec::uniform(vec![3, 3], Activation::Sigmoid, Loss::Mse).unwrap());
    assert!(cpu::forward(&spec, &wrong, x.view()).is_err());
}

/// The kernels' twins are the math they fuse: `matmul`'s epilogues are the layer's functions, `loss_grad`
/// is the loss gradient times the output's derivative (taken from the output), `gather_rows` picks rows.
#[test]
fn the_kernel_twins_compute_the_math_they_fuse() {
    let mut r = common::rng(12);
    let (a, w) = (common::random(&mut r, 5, 4, 1.0), common::random(&mut r, 4, 3, 1.0));
    let (bias, z) = (common::random(&mut r, 1, 3, 1.0).row(0).to_owned(), common::random(&mut r, 5, 3, 2.0));
    let close = |name: &str, got: &ndarray::Array2<f64>, want: &ndarray::Array2<f64>| {
        assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-12), "{name}: {got} vs {want}");
    };
    for act in Activation::ALL {
        let (mut out, mut pre) = (ndarray::Array2::zeros((5, 3)), ndarray::Array2::zeros((5, 3)));
        cpu::matmul(
            a.view(),
            w.view(),
            cpu::Epilogue::Forward { bias: bias.view(), activation: act },
            &mut out,
            &mut pre,
        );
        let want_z = cpu::linear_forward(a.view(), w.view(), bias.view());
        close(&format!("{act}: Z"), &pre, &want_z);
        close(&format!("{act}: A"), &out, &cpu::activation_forward(act, want_z.view()));
        // The same product split in two along K: the first part with the bias, the last adding into Z.
        let (mut z1, mut unused) = (ndarray::Array2::zeros((5, 3)), ndarray::Array2::zeros((5, 3)));
        let (k1, k2) = (ndarray::s![.., ..2], ndarray::s![..2, ..]);
        cpu::matmul(a.slice(k1), w.slice(k2), cpu::Epilogue::Bias(bias.view()), &mut z1, &mut unused);
        let (kk1, kk2) = (ndarray::s![.., 2..], ndarray::s![2.., ..]);
        cpu::matmul(a.slice(kk1), w.slice(kk2), cpu::Epilogue::FinishForward(act), &mut out, &mut z1);
        close(&format!("{act}: split Z"), &z1, &want_z);
        close(&format!("{act}: split A"), &out, &cpu::activation_forward(act, want_z.view()));
        let delta = common::random(&mut r, 5, 3, 1.0);
        let mut d_prev = ndarray::Array2::zeros((5, 4));
        cpu::matmul(
            delta.view(),
            w.view().reversed_axes(),
            cpu::Epilogue::Derivative { z: a.view(), activation: act },
            &mut d_prev,
            &mut unused,
        );
        close(
            &format!("{act}: δ_prev"),
            &d_prev,
            &cpu::activation_backward(act, cpu::input_grad(delta.view(), w.view()).view(), a.view()),
        );
        let out_a = cpu::activation_forward(act, z.view());
        let y = common::random(&mut r, 5, 3, 1.0);
        let want = cpu::activation_backward(act, cpu::mse_grad(out_a.view(), y.view()).view(), z.view());
        close(&format!("{act}: loss_grad"), &cpu::loss_grad(2.0 / 15.0, act, out_a.view(), y.view()), &want);
    }
    let mut dw = common::random(&mut r, 4, 3, 1.0);
    let before = dw.clone();
    let mut unused = ndarray::Array2::zeros((4, 3));
    cpu::matmul(a.t(), z.view(), cpu::Epilogue::AddScaled(-0.5), &mut dw, &mut unused);
    close("W - lr·dW", &dw, &(&before - &(cpu::weight_grad(a.view(), z.view()) * 0.5)));
    close(
        "gather_rows",
        &cpu::gather_rows(a.view(), &[4, 0, 4]),
        &ndarray::stack![ndarray::Axis(0), a.row(4), a.row(0), a.row(4)],
    );
}

/// The optimizer's twins: the recurrence `optim_prepare` keeps is PyTorch's bias corrections, a restored
/// state replays to the same values, and the clip coefficient is `grad_norm_finish` of `grad_norm`.
#[test]
fn the_optimizer_twins_keep_pytorch_s_bias_corrections_and_clip() {
    use backprop::optim::{self, OptimConfig, OptimizerKind, StepScalars, StepState};
    let cfg = OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.0 };
    let (betas, one_minus) = ((0.9f32, 0.999f32), ((1.0f64 - 0.9) as f32, (1.0f64 - 0.999) as f32));
    let mut state = StepState::START;
    for t in 1..=2000u32 {
        optim::optim_prepare(&mut state, 0.5, betas, one_minus);
        let s = StepScalars::new(&cfg, 0.0, t as u64);
        let rel = |got: f32, want: f64| ((got as f64 - want) / want).abs();
        assert!(rel(state.bias_correction1, s.bias_correction1) < 1e-5, "t {t}: {state:?} vs {s:?}");
        assert!(rel(state.bias_correction2_sqrt, s.bias_correction2_sqrt) < 1e-4, "t {t}: {state:?} vs {s:?}");
    }
    let mut resumed = StepState::resumed(1999);
    optim::optim_prepare(&mut resumed, 0.5, betas, one_minus);
    assert_eq!(resumed, state, "a restored state replays to the same bits");
    optim::optim_prepare(&mut state, f32::NAN, betas, one_minus);
    assert_eq!((state.t, state.first_bad_step), (2001, 2001));
    let g = [0.5f32, -3.0, 1.25];
    let want = (2.0 / ((0.25f64 + 9.0 + 1.5625).sqrt() + 1e-6)).min(1.0);
    assert_eq!(optim::grad_norm_finish(&[optim::grad_norm(&g[..1]), optim::grad_norm(&g[1..])], 2.0), want);
    assert_eq!(optim::clip_coefficient(&g, 2.0), want as f32);
}
