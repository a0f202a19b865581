/* Short-time Fourier transforms on FFTW (single precision), matching torch.stft /
 * torch.istft with center=True, pad_mode='reflect', onesided, unnormalised, and a
 * periodic Hann window of win_length zero-padded (centred) to n_fft.
 * Frames: 1 + L / hop (integer division) for a signal of L samples.
 * Signals are [L] or [B, L] float32; results keep the batch dim only if given one. */
#ifndef JBX_STFT_H
#define JBX_STFT_H
#include <stdint.h>
#include "jbx_tensor.h"

/* |STFT(x)|: [B, n_fft/2+1, frames] (or [bins, frames]). Differentiable w.r.t. x; where
 * |X| = 0 the gradient is 0 (the subgradient torch uses: sgn(0) = 0, no eps). */
jbx_tensor *jbx_stft_mag(jbx_tensor *x, int n_fft, int hop, int win_length);

/* Complex STFT as [B, bins, frames, 2] (re, im) (or [bins, frames, 2]); not recorded
 * for autograd. */
jbx_tensor *jbx_stft(jbx_tensor *x, int n_fft, int hop, int win_length);

/* Inverse of jbx_stft like torch.istft (center=True, window-sum normalisation):
 * spec [B, bins, frames, 2] or [bins, frames, 2] -> [B, length] or [length].
 * length < 1 means torch's default, hop * (frames - 1). Forward only. The imaginary
 * parts of the DC (and Nyquist) bins are ignored, as irfft does. */
jbx_tensor *jbx_istft(jbx_tensor *spec, int n_fft, int hop, int win_length, int64_t length);

/* Triangular mel filters [n_mels, n_fft/2+1] as torchaudio.functional.melscale_fbanks
 * with mel_scale='htk', norm=None (its defaults): centres equally spaced on
 * 2595*log10(1 + f/700) between fmin and fmax, bin k at k * (sample_rate/2 floored) /
 * (bins - 1) Hz. fmax <= 0 means sample_rate/2 (floored, as torchaudio's f_max=None). */
jbx_tensor *jbx_mel_filterbank(int n_fft, int sample_rate, int n_mels, float fmin, float fmax);

/* Periodic Hann window of win_length zero-padded centred to n_fft (left pad
 * (n_fft - win_length)/2, as torch.stft): a new [n_fft] tensor. */
jbx_tensor *jbx_stft_window(int n_fft, int win_length);

#endif
