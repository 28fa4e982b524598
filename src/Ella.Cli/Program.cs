using TorchSharp;
var x = torch.randn(3, 3);
Console.WriteLine(x.matmul(x).sum().item<float>());
