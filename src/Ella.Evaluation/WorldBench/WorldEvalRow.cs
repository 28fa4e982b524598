using Ella.Pipelines;
using Ella.TextEncoders;

namespace Ella.Evaluation.WorldBench;

/// <summary>
/// One row of the world evaluation: how the world's UNet is conditioned. <see cref="Connector"/> is null for the
/// base row (the world's own CLIP); otherwise it is the connector file, run on <see cref="TextEncoder"/>.
/// </summary>
public sealed record WorldEvalRow(string Name, GenerationMode Mode, string? Connector, TextEncoderKind TextEncoder);
