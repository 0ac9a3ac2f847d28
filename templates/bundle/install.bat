@echo off
chcp 65001 >nul
setlocal
cd /d "%~dp0"
rem xl-ecom offline installer, written by "xl-ecom bundle". Usage: install.bat [workbook.xlsm]
set "PYVER={{python_version}}"
set "PY="
py -%PYVER% -c "import sys; sys.exit(0 if sys.maxsize > 2**32 else 1)" >nul 2>nul && set "PY=py -%PYVER%"
if not defined PY python -c "import sys; sys.exit(0 if sys.version_info[:2] == tuple(map(int, '%PYVER%'.split('.'))) and sys.maxsize > 2**32 else 1)" >nul 2>nul && set "PY=python"
if not defined PY (
  echo 错误：没有找到 64 位的 Python %PYVER%。请先安装 Python %PYVER% 的 64 位版本（python.org 的 Windows installer 64-bit，勾选“Add python.exe to PATH”），再运行本脚本。
  pause
  exit /b 2
)
if not exist ".venv\Scripts\python.exe" (
  echo 正在建立虚拟环境 .venv ……
  %PY% -m venv .venv || goto :fail
)
echo 正在离线安装 xl-ecom（不连接网络）……
".venv\Scripts\python.exe" -m pip install --disable-pip-version-check --no-index --find-links wheels "wheels\{{wheel}}" || goto :fail
set "WB=%~1"
if "%WB%"=="" if exist "%~dp0目标任务分解表.xlsm" set "WB=%~dp0目标任务分解表.xlsm"
if "%WB%"=="" (
  ".venv\Scripts\xl-ecom.exe" setup-excel
) else (
  ".venv\Scripts\xl-ecom.exe" setup-excel "%WB%"
)
if errorlevel 2 goto :fail
echo.
echo 安装完成。以后在命令行中使用：%~dp0.venv\Scripts\xl-ecom.exe --help
echo 本文件夹移动位置后，请重新运行 install.bat。
pause
exit /b 0

:fail
echo 错误：安装未完成，请把上面的信息发给维护人员。
pause
exit /b 2
