# xl-ecom offline installer, written by "xl-ecom bundle".
# Usage (PowerShell): powershell -ExecutionPolicy Bypass -File install.ps1 [workbook.xlsm]
param([string]$Workbook = "")
$ErrorActionPreference = "Continue"  # native commands are checked through $LASTEXITCODE
Set-Location -LiteralPath $PSScriptRoot
$PyVer = "{{python_version}}"
$check = "import sys; sys.exit(0 if sys.version_info[:2] == tuple(map(int, '$PyVer'.split('.'))) and sys.maxsize > 2**32 else 1)"

function Fail([string]$Message) {
    Write-Host "错误：$Message" -ForegroundColor Red
    exit 2
}

$py = $null
if (Get-Command py -ErrorAction SilentlyContinue) {
    & py "-$PyVer" -c $check 2>$null
    if ($LASTEXITCODE -eq 0) { $py = @("py", "-$PyVer") }
}
if (-not $py -and (Get-Command python -ErrorAction SilentlyContinue)) {
    & python -c $check 2>$null
    if ($LASTEXITCODE -eq 0) { $py = @("python") }
}
if (-not $py) {
    Fail "没有找到 64 位的 Python $PyVer。请先安装 Python $PyVer 的 64 位版本（python.org 的 Windows installer 64-bit，勾选“Add python.exe to PATH”），再运行本脚本。"
}

$venvPython = Join-Path $PSScriptRoot ".venv\Scripts\python.exe"
if (-not (Test-Path -LiteralPath $venvPython)) {
    Write-Host "正在建立虚拟环境 .venv ……"
    $exe, $rest = $py
    & $exe @rest -m venv .venv
    if ($LASTEXITCODE -ne 0) { Fail "建立虚拟环境失败。" }
}

Write-Host "正在离线安装 xl-ecom（不连接网络）……"
& $venvPython -m pip install --disable-pip-version-check --no-index --find-links wheels "wheels\{{wheel}}"
if ($LASTEXITCODE -ne 0) { Fail "离线安装失败，请把上面的信息发给维护人员。" }

$xlEcom = Join-Path $PSScriptRoot ".venv\Scripts\xl-ecom.exe"
if (-not $Workbook) {
    $beside = Join-Path $PSScriptRoot "目标任务分解表.xlsm"
    if (Test-Path -LiteralPath $beside) { $Workbook = $beside }
}
if ($Workbook) { & $xlEcom setup-excel $Workbook } else { & $xlEcom setup-excel }
if ($LASTEXITCODE -ge 2) { Fail "设置工作簿失败。" }

Write-Host ""
Write-Host "安装完成。以后在命令行中使用：$xlEcom --help"
Write-Host "本文件夹移动位置后，请重新运行 install.ps1。"
